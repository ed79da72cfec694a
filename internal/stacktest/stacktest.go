// Package stacktest runs a whole bertq stack in one process, for tests and
// runnable examples: an embedded broker on a random loopback port with a
// temporary store, provisioned, the intake, and a worker serving a small
// generated model on the plain-Go engine. It needs no fixture files and no
// *testing.T, so that a TestMain can start one for Example functions.
//
// The model's weights are generated (checkpoint.SyntheticFill): its answers
// are deterministic and meaningless.
package stacktest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/checkpoint"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu" // the plain-Go backend
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/tokenizer"
	"github.com/bertq/bertq/worker"
)

// Model is the name the stack serves its model under.
const Model = "tiny"

// Shape of the compiled model.
const (
	Batch = 4
	Seq   = 128
)

// Stack is a running broker, intake and (when started) worker.
type Stack struct {
	URL    string
	Broker *broker.Broker
	NC     *nats.Conn
	JS     jetstream.JetStream

	dir    string
	intake *broker.Intake
	file   *artifact.File
	model  engine.Model
	info   worker.Info

	mu     sync.Mutex
	w      *worker.Worker
	stopW  context.CancelFunc
	doneW  chan error
	closed bool
}

// Option configures Start.
type Option func(*options)

type options struct{ worker bool }

// WithoutWorker starts no worker: requests wait in the queue until
// StartWorker.
func WithoutWorker() Option { return func(o *options) { o.worker = false } }

// Start runs the stack; Close stops it and removes its files.
func Start(opts ...Option) (s *Stack, err error) {
	o := options{worker: true}
	for _, f := range opts {
		f(&o)
	}
	dir, err := os.MkdirTemp("", "bertq-stacktest-")
	if err != nil {
		return nil, err
	}
	s = &Stack{dir: dir}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.Broker, err = broker.Start(broker.WithListen("127.0.0.1:-1"), broker.WithStoreDir(filepath.Join(dir, "store"))); err != nil {
		return nil, err
	}
	s.URL = s.Broker.ClientURL()
	if s.NC, err = nats.Connect(s.URL, nats.Name("stacktest")); err != nil {
		return nil, err
	}
	if s.JS, err = jetstream.New(s.NC); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err = broker.Provision(ctx, s.JS); err != nil {
		return nil, err
	}
	if s.intake, err = broker.StartIntake(s.NC); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "tiny.bqa")
	if err = compileTiny(path); err != nil {
		return nil, err
	}
	if err = s.upload(ctx, path); err != nil {
		return nil, err
	}
	f, err := artifact.Open(path)
	if err != nil {
		return nil, err
	}
	s.file = f // an engine may map its weights from the file: keep it open
	if s.info, err = worker.InfoFromArtifact(Model, f); err != nil {
		return nil, err
	}
	b, err := engine.Get("go")
	if err != nil {
		return nil, err
	}
	if s.model, err = b.Load(f, engine.Options{}); err != nil {
		return nil, err
	}
	if o.worker {
		if err = s.StartWorker(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Config is the generated model's architecture: BERT's vocabulary, two
// small layers.
func Config() bert.Config {
	return bert.Config{
		VocabSize: tokenizer.Default().VocabSize(), HiddenSize: 32, NumLayers: 2, NumHeads: 2, IntermediateSize: 64,
		MaxPositions: Seq, TypeVocabSize: 2, NumLabels: 2, Labels: []string{"not_equivalent", "equivalent"},
		Activation: bert.GELUExact, LayerNormEps: 1e-12,
	}
}

// generated is a bert.TensorSource of synthetic values.
type generated struct{}

func (generated) Tensor(name string, shape ...int) ([]float32, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	t := make([]float32, n)
	checkpoint.SyntheticFill(name, t, 0)
	return t, nil
}

func compileTiny(path string) error {
	w, err := bert.Assemble(Config(), generated{})
	if err != nil {
		return err
	}
	src := compiler.Source{Name: "stacktest:tiny", SHA256: "stacktest-tiny-v1", Synthetic: true, Weights: w, Tokenizer: tokenizer.Default()}
	_, err = compiler.Compile(src, path, compiler.Options{Batch: Batch, Seq: Seq, Precision: artifact.FP32, GELU: "auto", Backend: "go"})
	return err
}

// upload stores the artifact in the model bucket, where the intake looks.
func (s *Stack) upload(ctx context.Context, path string) error {
	obs, err := s.JS.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: Model}, f)
	return err
}

// StartWorker starts the worker (one loop, id "stack-worker") and waits
// until its consumer exists.
func (s *Stack) StartWorker() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		return errors.New("stacktest: the worker runs already")
	}
	w, err := worker.New(s.NC, s.model, worker.WithInfo(s.info), worker.WithPinning(false),
		worker.WithFetchWait(50*time.Millisecond), worker.WithID("stack-worker"), worker.WithStatsInterval(0))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.JS.Consumer(ctx, schemas.InferStream, schemas.WorkerDurable(Model)); err == nil {
			break
		}
		if time.Now().After(deadline) {
			cancel()
			return fmt.Errorf("stacktest: the worker's consumer never appeared: %v", <-done)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.w, s.stopW, s.doneW = w, cancel, done
	return nil
}

// Worker is the running worker, or nil.
func (s *Stack) Worker() *worker.Worker {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w
}

// StopWorker stops the worker and waits for it to drain.
func (s *Stack) StopWorker() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return nil
	}
	s.stopW()
	err := <-s.doneW
	s.w = nil
	return err
}

// Close stops everything and removes the stack's files.
func (s *Stack) Close() {
	s.StopWorker()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.intake != nil {
		s.intake.Stop()
	}
	if s.model != nil {
		s.model.Close()
	}
	if s.file != nil {
		s.file.Close()
	}
	if s.NC != nil {
		s.NC.Close()
	}
	if s.Broker != nil {
		s.Broker.Shutdown()
		s.Broker.WaitForShutdown()
	}
	os.RemoveAll(s.dir)
}
