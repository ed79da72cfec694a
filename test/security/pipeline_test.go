package security_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// op is one thing a role tries. It returns the operation's own error; a
// refusal also shows as a permissions violation naming subject.
type op struct {
	role, what string
	subject    string // the subject the server names when it refuses
	do         func(t *testing.T, c *client) error
}

const wait = 400 * time.Millisecond

func pub(subject string) func(*testing.T, *client) error {
	return func(t *testing.T, c *client) error {
		if err := c.nc.Publish(subject, []byte(`{"evil":true}`)); err != nil {
			return err
		}
		return c.nc.Flush()
	}
}

func sub(subject string) func(*testing.T, *client) error {
	return func(t *testing.T, c *client) error {
		s, err := c.nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		t.Cleanup(func() { s.Unsubscribe() })
		return c.nc.Flush()
	}
}

func req(subject string) func(*testing.T, *client) error {
	return func(t *testing.T, c *client) error {
		_, err := c.nc.Request(subject, []byte(`{}`), wait)
		return err
	}
}

// denied lists what each role must not be able to do.
func denied() []op {
	infer, work := schemas.InferSubject(model), schemas.WorkSubject(model)
	nextInfer := "$JS.API.CONSUMER.MSG.NEXT." + schemas.InferStream + "." + schemas.WorkerDurable(model)
	ack := "$JS.ACK." + schemas.InferStream + "." + schemas.WorkerDurable(model) + ".1.1.1.1700000000000000000.0"
	chunk := "$O." + schemas.ModelBucket + ".C.evil"
	return []op{
		{"producer", "consume the work queue (create a consumer)", "$JS.API.CONSUMER.CREATE.BERTQ_INFER.evil.bertq.work.infer.tiny",
			func(t *testing.T, c *client) error {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				_, err := c.js.CreateOrUpdateConsumer(ctx, schemas.InferStream, jetstream.ConsumerConfig{Durable: "evil", FilterSubject: work})
				return err
			}},
		{"producer", "pull from the workers' consumer", nextInfer, req(nextInfer)},
		{"producer", "ack or terminate a queued request", ack, pub(ack)},
		{"producer", "read the worker's inbox", "_INBOX.worker.>", sub("_INBOX.worker.>")},
		{"producer", "read the intake's inbox", "_INBOX.intake.>", sub("_INBOX.intake.>")},
		{"producer", "read every inbox", "_INBOX.>", sub("_INBOX.>")},
		{"producer", "read the default inbox space (other clients' replies)", "_INBOX.bertq.>", sub("_INBOX.bertq.>")},
		{"producer", "eavesdrop on requests to the intake", "bert.infer.*", sub("bert.infer.*")},
		{"producer", "eavesdrop on the work subjects", "bertq.work.infer.>", sub("bertq.work.infer.>")},
		{"producer", "submit a compile job via the intake", schemas.CompileSubject, req(schemas.CompileSubject)},
		{"producer", "submit a compile job into the stream", schemas.CompileWorkSubject, pub(schemas.CompileWorkSubject)},
		{"producer", "put into the model bucket", chunk, pub(chunk)},
		{"producer", "open the model bucket", "$JS.API.STREAM.INFO.OBJ_bertq-models",
			func(t *testing.T, c *client) error {
				ctx, cancel := context.WithTimeout(context.Background(), wait)
				defer cancel()
				_, err := c.js.ObjectStore(ctx, schemas.ModelBucket)
				return err
			}},
		{"producer", "purge the work queue", "$JS.API.STREAM.PURGE.BERTQ_INFER", req("$JS.API.STREAM.PURGE.BERTQ_INFER")},
		{"producer", "write dead letters", schemas.DeadSubject(model), pub(schemas.DeadSubject(model))},
		{"producer", "ask a worker's status", schemas.WorkerStatusPrefix + model, req(schemas.WorkerStatusPrefix + model)},

		{"worker", "write the model bucket", chunk, pub(chunk)},
		{"worker", "purge the model bucket", "$JS.API.STREAM.PURGE.OBJ_bertq-models", req("$JS.API.STREAM.PURGE.OBJ_bertq-models")},
		{"worker", "delete the model bucket", "$JS.API.STREAM.DELETE.OBJ_bertq-models", req("$JS.API.STREAM.DELETE.OBJ_bertq-models")},
		{"worker", "enqueue requests (a reply loop)", work, pub(work)},
		{"worker", "submit a compile job", schemas.CompileWorkSubject, pub(schemas.CompileWorkSubject)},
		{"worker", "read the checkpoint bucket", "$JS.API.STREAM.INFO.OBJ_bertq-checkpoints", req("$JS.API.STREAM.INFO.OBJ_bertq-checkpoints")},
		{"worker", "read the producer's replies", "_INBOX.producer.>", sub("_INBOX.producer.>")},
		{"worker", "delete the work queue", "$JS.API.STREAM.DELETE.BERTQ_INFER", req("$JS.API.STREAM.DELETE.BERTQ_INFER")},
		{"worker", "take the intake's traffic", "bert.infer.*", sub("bert.infer.*")},
		{"worker", "consume compile jobs", "$JS.API.CONSUMER.MSG.NEXT.BERTQ_COMPILE.bertq-compiler", req("$JS.API.CONSUMER.MSG.NEXT.BERTQ_COMPILE.bertq-compiler")},

		{"compiler", "consume the inference queue", nextInfer, req(nextInfer)},
		{"compiler", "enqueue inference requests", work, pub(work)},
		{"compiler", "delete the model bucket", "$JS.API.STREAM.DELETE.OBJ_bertq-models", req("$JS.API.STREAM.DELETE.OBJ_bertq-models")},
		{"compiler", "write the checkpoint bucket", "$O.bertq-checkpoints.C.evil", pub("$O.bertq-checkpoints.C.evil")},
		{"compiler", "read the producer's replies", "_INBOX.producer.>", sub("_INBOX.producer.>")},
		{"compiler", "ack inference requests", ack, pub(ack)},

		{"intake", "consume the inference queue", nextInfer, req(nextInfer)},
		{"intake", "create a consumer on the queue", "$JS.API.CONSUMER.CREATE.BERTQ_INFER.evil", req("$JS.API.CONSUMER.CREATE.BERTQ_INFER.evil")},
		{"intake", "write the model bucket", chunk, pub(chunk)},
		{"intake", "read the model bucket's chunks", "$JS.API.CONSUMER.CREATE.OBJ_bertq-models.evil.$O.bertq-models.C.>", req("$JS.API.CONSUMER.CREATE.OBJ_bertq-models.evil.$O.bertq-models.C.>")},
		{"intake", "delete the work queue", "$JS.API.STREAM.DELETE.BERTQ_INFER", req("$JS.API.STREAM.DELETE.BERTQ_INFER")},
		{"intake", "purge the work queue", "$JS.API.STREAM.PURGE.BERTQ_INFER", req("$JS.API.STREAM.PURGE.BERTQ_INFER")},
		{"intake", "read the producer's replies", "_INBOX.producer.>", sub("_INBOX.producer.>")},
		{"intake", "ack inference requests", ack, pub(ack)},
		{"intake", "read another account's or the system's subjects", "$SYS.>", sub("$SYS.>")},
		{"producer", "publish below a model's intake subject", infer + ".x", pub(infer + ".x")},
	}
}

// allowed lists what each role must be able to do beyond running the
// pipeline (which exercises the rest).
func allowed(p *pipeline) []op {
	return []op{
		{"producer", "request through the intake and read its own reply", "", func(t *testing.T, c *client) error {
			r := p.infer(t, "allowed-1", "A man is playing a guitar.", "A person plays guitar.")
			if r.Error != nil {
				return r.Error
			}
			return nil
		}},
		{"producer", "publish straight into the work queue (PubAck) and get the reply (producer --direct)", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := producer.Run(ctx, c.nc, producer.WithModel(model), producer.WithClients(2), producer.WithCycle(2),
				producer.WithDirect(true), producer.WithTimeout(20*time.Second))
			if err != nil {
				return err
			}
			if s.Answered != 4 {
				return fmt.Errorf("answered %d of 4", s.Answered)
			}
			return nil
		}},
		{"producer", "request through the intake (producer, msgpack)", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			s, err := producer.Run(ctx, c.nc, producer.WithModel(model), producer.WithClients(2), producer.WithCycle(2),
				producer.WithEncoding(schemas.Msgpack), producer.WithTimeout(20*time.Second))
			if err != nil {
				return err
			}
			if s.Answered != 4 {
				return fmt.Errorf("answered %d of 4", s.Answered)
			}
			return nil
		}},
		{"worker", "read the model bucket (FetchArtifact)", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			f, err := worker.FetchArtifact(ctx, c.js, model, t.TempDir())
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"worker", "dead-letter a request", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := c.js.Publish(ctx, schemas.DeadSubject(model), []byte(`{"id":"dead-1","a":"x"}`))
			return err
		}},
		{"intake", "find the queued request of a dead-letter advisory (stream read and delete)", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := c.js.Stream(ctx, schemas.InferStream)
			if err != nil {
				return err
			}
			if _, err := s.GetMsg(ctx, 1<<40); !errors.Is(err, jetstream.ErrMsgNotFound) {
				return fmt.Errorf("get: %v", err)
			}
			if err := s.DeleteMsg(ctx, 1<<40); err == nil || strings.Contains(err.Error(), "timeout") {
				return fmt.Errorf("delete: %v", err)
			}
			return nil
		}},
		{"intake", "watch the model bucket's names", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			obs, err := c.js.ObjectStore(ctx, schemas.ModelBucket)
			if err != nil {
				return err
			}
			w, err := obs.Watch(ctx)
			if err != nil {
				return err
			}
			defer w.Stop()
			names := map[string]bool{}
			for {
				select {
				case info := <-w.Updates():
					if info == nil {
						if !names[model] {
							return fmt.Errorf("the watch showed %v, not %s", names, model)
						}
						return nil
					}
					names[info.Name] = true
				case <-ctx.Done():
					return fmt.Errorf("the watch showed %v, then nothing: %w", names, ctx.Err())
				}
			}
		}},
		{"intake", "provision again (idempotent)", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			return brokerProvision(ctx, c.js)
		}},
		{"compiler", "replace a model in the bucket (a recompile purges the old chunks)", "", func(t *testing.T, c *client) error {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for range 2 {
				job := schemas.CompileJob{Name: "tiny-replaced", Source: "checkpoint:" + model, Batch: 1, Seq: 16, Precision: "fp32"}
				if _, err := compiler.Submit(ctx, p.admin.nc, job, compiler.WithSubmitTimeout(60*time.Second)); err != nil {
					return err
				}
			}
			return nil
		}},
		{"admin", "discover the services (nats micro ping)", "", func(t *testing.T, c *client) error {
			inbox := c.nc.NewInbox()
			s, err := c.nc.SubscribeSync(inbox)
			if err != nil {
				return err
			}
			defer s.Unsubscribe()
			if err := c.nc.PublishRequest("$SRV.PING", inbox, nil); err != nil {
				return err
			}
			seen := map[string]bool{}
			for len(seen) < 2 {
				m, err := s.NextMsg(5 * time.Second)
				if err != nil {
					return fmt.Errorf("services that answered: %v: %w", seen, err)
				}
				for _, name := range []string{schemas.IntakeService, schemas.WorkerService} {
					if strings.Contains(string(m.Data), `"name":"`+name+`"`) {
						seen[name] = true
					}
				}
			}
			return nil
		}},
		{"admin", "ask a worker's status", "", func(t *testing.T, c *client) error {
			_, err := c.nc.Request(schemas.WorkerStatusPrefix+model, nil, 5*time.Second)
			return err
		}},
	}
}

func TestSecurePipeline(t *testing.T) {
	p := startPipeline(t)
	clients := map[string]*client{"intake": p.intake, "worker": p.worker, "compiler": p.compiler, "producer": p.producer, "admin": p.admin}
	r := p.infer(t, "tls-1", "The cat sat on the mat.", "A cat was sitting on a mat.")
	if r.Error != nil || len(r.Probabilities) != 2 || r.Worker != "secure-worker" {
		t.Fatalf("end-to-end request over TLS: %+v", r)
	}
	p.noViolations(t)

	var matrix strings.Builder
	fmt.Fprintf(&matrix, "\n%-9s %-7s %s\n", "role", "verdict", "operation")
	for _, o := range allowed(p) {
		ok := t.Run("allowed/"+o.role+"/"+o.what, func(t *testing.T) {
			c := clients[o.role]
			if err := o.do(t, c); err != nil {
				t.Fatalf("%s could not %s: %v (violations %v)", o.role, o.what, err, c.violations())
			}
			if v := c.violations(); len(v) > 0 {
				t.Fatalf("%s was refused: %v", o.role, v)
			}
		})
		fmt.Fprintf(&matrix, "%-9s %-7s %s%s\n", o.role, "allowed", o.what, mark(ok))
	}
	for _, o := range denied() {
		ok := t.Run("denied/"+o.role+"/"+o.what, func(t *testing.T) {
			c := clients[o.role]
			err := o.do(t, c)
			if !c.sawViolation(o.subject, 2*time.Second) {
				t.Fatalf("%s could %s: no permissions violation for %q (operation error: %v)", o.role, o.what, o.subject, err)
			}
		})
		fmt.Fprintf(&matrix, "%-9s %-7s %s (%s)%s\n", o.role, "denied", o.what, o.subject, mark(ok))
	}
	t.Log(matrix.String())
}

func mark(ok bool) string {
	if ok {
		return ""
	}
	return "  <-- FAILED"
}

// TestSecureReplyAbuse: a producer aims a reply at the JetStream API,
// through the intake and straight into the queue. Neither the intake nor
// the worker publishes there (their permissions would allow some of it:
// the server would not even be asked).
func TestSecureReplyAbuse(t *testing.T) {
	p := startPipeline(t)
	target := "$JS.API.STREAM.PURGE." + schemas.InferStream
	bad := p.w.Stats().Errors[schemas.CodeBadRequest]
	// Through the intake: the reply subject of the request.
	if err := p.producer.nc.PublishRequest(schemas.InferSubject(model), target, []byte(`{"id":"abuse-1","a":"x"}`)); err != nil {
		t.Fatal(err)
	}
	// Straight into the queue: the Bertq-Reply-To header.
	m := nats.NewMsg(schemas.WorkSubject(model))
	m.Data = []byte(`{"id":"abuse-2","a":"x"}`)
	m.Header.Set(schemas.HeaderReplyTo, target)
	m.Header.Set(schemas.HeaderMsgID, "abuse-2")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := p.producer.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.w.Stats().Errors[schemas.CodeBadRequest] == bad && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := p.w.Stats().Errors[schemas.CodeBadRequest]; got != bad+1 {
		t.Fatalf("worker refusals %d → %d, want +1", bad, got)
	}
	// The system still works, and nobody tried to publish to the target.
	if r := p.infer(t, "after-abuse", "x", "y"); r.Error != nil {
		t.Fatal(r.Error)
	}
	if strings.Contains(p.logs.String(), target+`\"`) && strings.Contains(p.logs.String(), "Permissions Violation") {
		t.Fatalf("a service tried to publish to %s:\n%s", target, p.logs.String())
	}
	p.noViolations(t)
	if n := strings.Count(p.logs.String(), "its reply subject is not an inbox"); n != 2 {
		t.Fatalf("%d refusals logged, want 2 (intake, worker)", n)
	}
}
