package badinput_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/internal/testbuf"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// model is the name the tiny checkpoint is served under.
const model = "tiny"

// harness is an embedded, provisioned broker with the intake, a worker
// serving the tiny model from the model bucket and a compile worker.
type harness struct {
	b     *broker.Broker
	nc    *nats.Conn // the client's connection
	js    jetstream.JetStream
	w     *worker.Worker
	wdone chan error
	cdone chan error
	logs  *testbuf.Buffer
	seq   atomic.Int64
}

func connect(t *testing.T, url, name string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, nats.Name(name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// compileTiny compiles tiny-fp32 for batch 4 × seq 128 fp32 into dir.
func compileTiny(t *testing.T, dir string) string {
	t.Helper()
	src, err := compiler.LoadSource(fixtures.ModelDir(t, "tiny-fp32"))
	if err != nil {
		t.Fatal(err)
	}
	opts := compiler.DefaultOptions()
	opts.Batch, opts.Seq, opts.Precision, opts.Backend = 4, 128, artifact.FP32, "go"
	out := filepath.Join(dir, "tiny.bqa")
	if _, err := compiler.Compile(src, out, opts); err != nil {
		t.Fatalf("compiling tiny-fp32: %v", err)
	}
	return out
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	logs := &testbuf.Buffer{}
	log := zerolog.New(logs).With().Timestamp().Logger()
	b, err := broker.Start(broker.WithListen("127.0.0.1:-1"), broker.WithStoreDir(t.TempDir()),
		broker.WithLogger(log.Level(zerolog.WarnLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(); b.WaitForShutdown() })
	h := &harness{b: b, logs: logs, wdone: make(chan error, 1), cdone: make(chan error, 1)}

	svc := connect(t, b.ClientURL(), "intake")
	sjs, err := jetstream.New(svc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, sjs); err != nil {
		t.Fatal(err)
	}
	in, err := broker.StartIntake(svc, broker.WithIntakeLogger(component(log, "intake")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })

	h.nc = connect(t, b.ClientURL(), "client")
	if h.js, err = jetstream.New(h.nc); err != nil {
		t.Fatal(err)
	}
	// The artifact travels through the model bucket, as in production.
	obs, err := h.js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	art, err := os.Open(compileTiny(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	defer art.Close()
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: model}, art); err != nil {
		t.Fatal(err)
	}
	h.startWorker(t, log)
	h.startCompiler(t, log)
	return h
}

// component tags every line a service logs with the service's name, so that
// a check can tell who logged it.
func component(log zerolog.Logger, name string) zerolog.Logger {
	return log.With().Str("component", name).Logger()
}

func (h *harness) startWorker(t *testing.T, log zerolog.Logger) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	wnc := connect(t, h.b.ClientURL(), "worker")
	wjs, err := jetstream.New(wnc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := worker.FetchArtifact(ctx, wjs, model, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	be, err := engine.Get("go")
	if err != nil {
		t.Fatal(err)
	}
	m, err := be.Load(f, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	info, err := worker.InfoFromArtifact(model, f)
	if err != nil {
		t.Fatal(err)
	}
	h.w, err = worker.New(wnc, m, worker.WithInfo(info), worker.WithLogger(component(log, "worker")), worker.WithID("badinput-worker"),
		worker.WithFetchWait(200*time.Millisecond), worker.WithPinning(false), worker.WithStatsInterval(0),
		worker.WithMaxDeliver(3), worker.WithRetryDelay(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stop := context.WithCancel(context.Background())
	go func() { h.wdone <- h.w.Run(wctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-h.wdone:
			if err != nil {
				t.Errorf("worker Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("the worker did not drain within 15 s")
		}
	})
	h.waitConsumer(t, schemas.InferStream, schemas.WorkerDurable(model))
}

func (h *harness) startCompiler(t *testing.T, log zerolog.Logger) {
	t.Helper()
	cnc := connect(t, h.b.ClientURL(), "compiler")
	ctx, stop := context.WithCancel(context.Background())
	go func() {
		h.cdone <- compiler.Serve(ctx, cnc, compiler.WithWorkDir(t.TempDir()), compiler.WithVerifyBackend("go"),
			compiler.WithServiceLogger(component(log, "compiler")))
	}()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-h.cdone:
			if err != nil {
				t.Errorf("compiler Serve: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("the compile worker did not stop within 15 s")
		}
	})
	h.waitConsumer(t, schemas.CompileStream, schemas.CompilerDurable)
}

func (h *harness) waitConsumer(t *testing.T, stream, durable string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := h.js.Consumer(context.Background(), stream, durable); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer %s on %s never appeared", durable, stream)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// id returns a fresh request id (the stream de-duplicates ids).
func (h *harness) id(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, h.seq.Add(1))
}

// consumerInfo reads a consumer's state.
func (h *harness) consumerInfo(t *testing.T, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := h.js.Consumer(ctx, stream, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// settled waits until the consumer has nothing pending or unacked and its
// stream holds nothing (a work queue keeps only what is not yet acked or
// terminated), and returns its state.
func (h *harness) settled(t *testing.T, stream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info := h.consumerInfo(t, stream, durable)
		s, err := h.js.Stream(context.Background(), stream)
		if err != nil {
			t.Fatal(err)
		}
		msgs := s.CachedInfo().State.Msgs
		if info.NumPending == 0 && info.NumAckPending == 0 && msgs == 0 {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not settled: %d pending, %d unacked, %d redelivered, %d messages in %s",
				durable, info.NumPending, info.NumAckPending, info.NumRedelivered, msgs, stream)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// workerUp fails the test when the worker's Run returned.
func (h *harness) workerUp(t *testing.T) {
	t.Helper()
	select {
	case err := <-h.wdone:
		h.wdone <- err
		t.Fatalf("the worker stopped: %v", err)
	default:
	}
	select {
	case err := <-h.cdone:
		h.cdone <- err
		t.Fatalf("the compile worker stopped: %v", err)
	default:
	}
}

// request sends data to the model's intake subject and decodes the reply.
func (h *harness) request(t *testing.T, subject, contentType string, data []byte) (*nats.Msg, schemas.InferReply) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	if contentType != "" {
		m.Header.Set(schemas.HeaderContentType, contentType)
	}
	resp, err := h.nc.RequestMsg(m, 20*time.Second)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	var r schemas.InferReply
	enc := schemas.Detect(resp.Header.Get(schemas.HeaderContentType), resp.Data)
	if err := schemas.Unmarshal(enc, resp.Data, &r); err != nil {
		t.Fatalf("undecodable reply %.200q: %v", resp.Data, err)
	}
	return resp, r
}

// valid sends a good text request and checks its prediction.
func (h *harness) valid(t *testing.T) {
	t.Helper()
	id := h.id("valid")
	body := fmt.Appendf(nil, `{"id":%q,"a":"Amrozi accused his brother.","b":"He called his brother a liar."}`, id)
	_, r := h.request(t, schemas.InferSubject(model), "", body)
	if r.Error != nil || r.ID != id || len(r.Probabilities) != 2 || r.Label == "" {
		t.Fatalf("the valid request after the bad one failed: %+v", r)
	}
}

// direct publishes into the model's work subject as a JetStream client.
func (h *harness) direct(t *testing.T, subject string, hdr nats.Header, data []byte) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	for k, v := range hdr {
		m.Header[k] = v
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := h.js.PublishMsg(ctx, m); err != nil {
		t.Fatal(err)
	}
}

// logMark is the current end of the captured log: waitLog looks only at what
// is written after it (the buffer is shared by every case and never reset).
func (h *harness) logMark() int { return len(h.logs.String()) }

// waitLog waits up to 10 s for a line logged after mark whose fields include
// every field of want, and returns it; nil when none came.
func (h *harness) waitLog(t *testing.T, mark int, want map[string]string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		for _, line := range strings.Split(h.logs.String()[mark:], "\n") {
			var fields map[string]any
			if json.Unmarshal([]byte(line), &fields) != nil {
				continue
			}
			if matches(fields, want) {
				return fields
			}
		}
		if time.Now().After(deadline) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func matches(fields map[string]any, want map[string]string) bool {
	for k, v := range want {
		if s, ok := fields[k].(string); !ok || s != v {
			return false
		}
	}
	return true
}

// silent fails if anything arrives on sub within d.
func silent(t *testing.T, sub *nats.Subscription, d time.Duration) {
	t.Helper()
	if m, err := sub.NextMsg(d); err == nil {
		t.Fatalf("a service published to %s: %.200q", m.Subject, m.Data)
	} else if !errors.Is(err, nats.ErrTimeout) {
		t.Fatal(err)
	}
}
