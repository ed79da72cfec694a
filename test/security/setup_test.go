package security_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/internal/testbuf"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/test/security/securetest"
	"github.com/bertq/bertq/worker"
)

const model = "tiny"

// client is one role's connection, recording the asynchronous errors the
// server sends it (permissions violations arrive that way).
type client struct {
	role string
	nc   *nats.Conn
	js   jetstream.JetStream

	mu   sync.Mutex
	errs []string
}

func (c *client) onError(_ *nats.Conn, _ *nats.Subscription, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.errs = append(c.errs, err.Error())
}

// violations returns the permissions violations received so far.
func (c *client) violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, e := range c.errs {
		if strings.Contains(e, "Permissions Violation") {
			out = append(out, e)
		}
	}
	return out
}

// sawViolation waits for a permissions violation naming subject.
func (c *client) sawViolation(subject string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for {
		for _, v := range c.violations() {
			if strings.Contains(v, `"`+subject+`"`) {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// env is an embedded broker started from deploy/secure/bertq.conf.
type env struct {
	s    *securetest.Setup
	b    *broker.Broker
	url  string
	logs *testbuf.Buffer
	log  zerolog.Logger
}

func startSecure(t *testing.T) *env {
	t.Helper()
	s := securetest.New(t)
	logs := &testbuf.Buffer{}
	log := zerolog.New(logs).With().Timestamp().Logger()
	b, err := broker.Start(broker.WithConfigFile(s.Config), broker.WithListen("127.0.0.1:-1"),
		broker.WithStoreDir(t.TempDir()), broker.WithLogger(log.With().Str("component", "nats").Logger().Level(zerolog.InfoLevel)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(); b.WaitForShutdown() })
	if !strings.HasPrefix(b.ClientURL(), "tls://127.0.0.1:") {
		t.Fatalf("client URL %s: want TLS on loopback", b.ClientURL())
	}
	return &env{s: s, b: b, url: b.ClientURL(), logs: logs, log: log}
}

// connect logs in as role over mutual TLS with its nkey and inbox prefix.
func (e *env) connect(t *testing.T, role string) *client {
	t.Helper()
	c := &client{role: role}
	opts := append(e.s.ClientOptions(t, role), nats.ErrorHandler(c.onError))
	nc, err := nats.Connect(e.url, opts...)
	if err != nil {
		t.Fatalf("%s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// pipeline is the whole system under the secure configuration, each
// service logged in as its role.
type pipeline struct {
	*env
	intake, worker, compiler, producer, admin *client
	w                                         *worker.Worker
}

func startPipeline(t *testing.T) *pipeline {
	t.Helper()
	p := &pipeline{env: startSecure(t)}
	p.intake = p.connect(t, "intake")
	p.worker = p.connect(t, "worker")
	p.compiler = p.connect(t, "compiler")
	p.producer = p.connect(t, "producer")
	p.admin = p.connect(t, "admin")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// The broker's own role provisions and serves the intake.
	if err := broker.Provision(ctx, p.intake.js); err != nil {
		t.Fatalf("intake provisioning: %v (violations %v)", err, p.intake.violations())
	}
	in, err := broker.StartIntake(p.intake.nc, broker.WithIntakeLogger(p.log.With().Str("component", "intake").Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })

	// The operator uploads the checkpoint and submits a compile job, which
	// the compile worker runs into the model bucket.
	if _, err := compiler.Upload(ctx, p.admin.js, model, fixtures.ModelDir(t, "tiny-fp32")); err != nil {
		t.Fatal(err)
	}
	cctx, stopCompiler := context.WithCancel(context.Background())
	cdone := make(chan error, 1)
	go func() {
		cdone <- compiler.Serve(cctx, p.compiler.nc, compiler.WithWorkDir(t.TempDir()), compiler.WithVerifyBackend("go"),
			compiler.WithServiceLogger(p.log.With().Str("component", "compiler").Logger()))
	}()
	t.Cleanup(func() {
		stopCompiler()
		if err := <-cdone; err != nil {
			t.Errorf("compiler: %v", err)
		}
	})
	res, err := compiler.Submit(ctx, p.admin.nc, schemas.CompileJob{Name: model, Source: "checkpoint:" + model, Batch: 4, Seq: 128, Precision: "fp32"},
		compiler.WithSubmitTimeout(60*time.Second))
	if err != nil {
		t.Fatalf("compile job: %v (compiler violations %v)", err, p.compiler.violations())
	}
	if len(res.Digest) != 64 {
		t.Fatalf("compile result %+v", res)
	}

	// The worker fetches the artifact from the bucket and serves it.
	f, err := worker.FetchArtifact(ctx, p.worker.js, model, t.TempDir())
	if err != nil {
		t.Fatalf("worker fetch: %v (violations %v)", err, p.worker.violations())
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
	p.w, err = worker.New(p.worker.nc, m, worker.WithInfo(info), worker.WithID("secure-worker"), worker.WithPinning(false),
		worker.WithFetchWait(200*time.Millisecond), worker.WithLogger(p.log.With().Str("component", "worker").Logger()))
	if err != nil {
		t.Fatal(err)
	}
	wctx, stopWorker := context.WithCancel(context.Background())
	wdone := make(chan error, 1)
	go func() { wdone <- p.w.Run(wctx) }()
	t.Cleanup(func() {
		stopWorker()
		if err := <-wdone; err != nil {
			t.Errorf("worker: %v", err)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := p.admin.js.Consumer(ctx, schemas.InferStream, schemas.WorkerDurable(model)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's consumer never appeared (violations %v)", p.worker.violations())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

// infer sends a text request through the intake as the producer.
func (p *pipeline) infer(t *testing.T, id, a, b string) schemas.InferReply {
	t.Helper()
	body := fmt.Appendf(nil, `{"id":%q,"a":%q,"b":%q}`, id, a, b)
	resp, err := p.producer.nc.Request(schemas.InferSubject(model), body, 20*time.Second)
	if err != nil {
		t.Fatalf("request %s: %v (violations: producer %v, intake %v, worker %v)", id, err,
			p.producer.violations(), p.intake.violations(), p.worker.violations())
	}
	var r schemas.InferReply
	if err := schemas.Unmarshal(schemas.JSON, resp.Data, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// noViolations fails if a service was refused anything while doing its job.
func (p *pipeline) noViolations(t *testing.T) {
	t.Helper()
	for _, c := range []*client{p.intake, p.worker, p.compiler, p.producer, p.admin} {
		if v := c.violations(); len(v) > 0 {
			t.Errorf("%s was refused while doing its job: %v", c.role, v)
		}
	}
}

func brokerProvision(ctx context.Context, js jetstream.JetStream) error {
	return broker.Provision(ctx, js)
}
