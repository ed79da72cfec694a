package worker_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/natstest"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/tokenizer"
	"github.com/bertq/bertq/worker"
)

// env is an embedded, provisioned broker with a client connection.
type env struct {
	b  *broker.Broker
	nc *nats.Conn
	js jetstream.JetStream
}

func newEnv(t *testing.T, intake bool) *env {
	t.Helper()
	e := natstest.Provisioned(t)
	if intake {
		in, err := broker.StartIntake(e.NC)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Stop() })
	}
	return &env{b: e.Broker, nc: e.NC, js: e.JS}
}

// putModel stores bytes as model name in the model bucket (the intake only
// checks that the object exists).
func (e *env) putModel(t *testing.T, name string, data []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	obs, err := e.js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, name, data); err != nil {
		t.Fatal(err)
	}
}

// consumerIdle waits until the model's consumer has nothing pending or unacked.
func (e *env) consumerIdle(t *testing.T, model string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var info *jetstream.ConsumerInfo
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c, err := e.js.Consumer(ctx, schemas.InferStream, schemas.WorkerDurable(model))
		if err == nil {
			info, err = c.Info(ctx)
		}
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer not idle: %d pending, %d unacked", info.NumPending, info.NumAckPending)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fakeModel is a deterministic stand-in engine: each row's logits are a
// function of that row alone, so that slot mix-ups show.
type fakeModel struct {
	spec  engine.Spec
	vocab int
	cls   int32
	sep   int32
	delay time.Duration
	// poison, when not 0, is a token id the engine fails on: any batch
	// holding it fails, as a real engine might on one bad input.
	poison int32

	mu      sync.Mutex
	batches []fakeBatch
	failN   atomic.Int64
	panicN  atomic.Int64
	calls   atomic.Int64
}

func newFake(batch, seq int) *fakeModel {
	tok := tokenizer.Default()
	cls, _ := tok.TokenID("[CLS]")
	sep, _ := tok.TokenID("[SEP]")
	return &fakeModel{spec: engine.Spec{Batch: batch, Seq: seq, Labels: 2, Precision: artifact.FP32}, vocab: tok.VocabSize(), cls: cls, sep: sep}
}

func (f *fakeModel) Spec() engine.Spec                    { return f.spec }
func (f *fakeModel) Backend() string                      { return "fake" }
func (f *fakeModel) Close() error                         { return nil }
func (f *fakeModel) NewRunner(int) (engine.Runner, error) { return &fakeRunner{f}, nil }

// fakeBatch is what one Run was given.
type fakeBatch struct {
	real, dummy int  // sequences: requests, and dummy rows ([CLS] [SEP] only)
	packed      bool // engine.Input.Lengths was set
	rows        int  // token rows
	masked      bool // an AttentionMask came with it
}

func (f *fakeModel) log() []fakeBatch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeBatch(nil), f.batches...)
}

// realBatches is the number of requests in each batch run.
func (f *fakeModel) realBatches() []int {
	var out []int
	for _, b := range f.log() {
		out = append(out, b.real)
	}
	return out
}

type fakeRunner struct{ f *fakeModel }

func (r *fakeRunner) Close() error { return nil }

var (
	errFake   = errors.New("fake engine failure")
	errPoison = errors.New("fake engine cannot run this input")
)

func (r *fakeRunner) Run(in engine.Input, logits []float32) error {
	f := r.f
	f.calls.Add(1)
	if err := engine.Check(f.spec, f.vocab, 2, in); err != nil {
		return err
	}
	if f.poison != 0 && slices.Contains(in.InputIDs, f.poison) {
		return errPoison
	}
	if f.failN.Load() > 0 {
		f.failN.Add(-1)
		return errFake
	}
	if f.panicN.Load() > 0 {
		f.panicN.Add(-1)
		panic("fake engine panic")
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	fb := fakeBatch{packed: in.Lengths != nil, rows: len(in.InputIDs), masked: in.AttentionMask != nil}
	start := 0
	for b := 0; b < in.Seqs(f.spec); b++ {
		n := in.Len(f.spec, b)
		ids, types := in.InputIDs[start:start+n], in.TokenTypeIDs[start:start+n]
		mask := in.AttentionMask
		if mask == nil {
			mask = make([]int32, len(in.InputIDs))
			for i := range mask {
				mask[i] = 1
			}
		}
		mask = mask[start : start+n]
		logits[b*2], logits[b*2+1] = fakeLogits(ids, types, mask)
		attended := 0
		for _, m := range mask {
			attended += int(m)
		}
		if attended == 2 && ids[0] == f.cls && ids[1] == f.sep {
			fb.dummy++
		} else {
			fb.real++
		}
		start += n
	}
	f.mu.Lock()
	f.batches = append(f.batches, fb)
	f.mu.Unlock()
	return nil
}

// fakeLogits is a function of one sequence's rows, the same whether they
// come padded (static) or trimmed (packed): padding rows weigh nothing.
func fakeLogits(ids, types, mask []int32) (float32, float32) {
	var s, n, t int64
	for i := range ids {
		s += int64(ids[i]) * int64(mask[i]) * int64(i+1)
		n += int64(mask[i])
		t += int64(types[i])
	}
	return float32(s%997) / 100, float32(n)/10 + float32(t)/7
}

// fakeInfo is the Info of a fake model served as name.
func fakeInfo(name string) worker.Info {
	tok := tokenizer.Default()
	return worker.Info{Name: name, Labels: []string{"not_equivalent", "equivalent"}, VocabSize: tok.VocabSize(), TypeVocabSize: 2, Tokenizer: tok}
}

// running is a worker serving in the background.
type running struct {
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan error
}

func startWorker(t *testing.T, e *env, m engine.Model, info worker.Info, opts ...worker.Option) *running {
	t.Helper()
	nc, err := nats.Connect(e.b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	opts = append([]worker.Option{worker.WithInfo(info), worker.WithFetchWait(200 * time.Millisecond), worker.WithID("test-worker")}, opts...)
	w, err := worker.New(nc, m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- w.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	// Wait for the consumer, so that requests published next are not early.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := e.js.Consumer(context.Background(), schemas.InferStream, schemas.WorkerDurable(info.Name))
		if err == nil && c != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("worker consumer never appeared")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return r
}

// stop cancels the worker and waits for its drain.
func (r *running) stop(t *testing.T) {
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("worker Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(15 * time.Second):
		t.Error("worker did not drain within 15 s")
	}
}

// reply is a decoded reply message.
type reply struct {
	msg *nats.Msg
	r   schemas.InferReply
}

func decodeReply(t *testing.T, m *nats.Msg) reply {
	t.Helper()
	var r schemas.InferReply
	enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
	if err := schemas.Unmarshal(enc, m.Data, &r); err != nil {
		t.Fatalf("reply %q: %v", m.Data, err)
	}
	return reply{m, r}
}

// publishDirect queues data on the model's work subject as a JetStream client
// would, asking for the reply on inbox ("" for none).
func (e *env) publishDirect(t *testing.T, model, id, inbox, contentType string, data []byte) *jetstream.PubAck {
	t.Helper()
	m := nats.NewMsg(schemas.WorkSubject(model))
	m.Data = data
	if inbox != "" {
		m.Header.Set(schemas.HeaderReplyTo, inbox)
	}
	if id != "" {
		m.Header.Set(schemas.HeaderMsgID, id)
	}
	if contentType != "" {
		m.Header.Set(schemas.HeaderContentType, contentType)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := e.js.PublishMsg(ctx, m)
	if err != nil {
		t.Fatal(err)
	}
	return ack
}

// collect waits for n messages on sub.
func collect(t *testing.T, sub *nats.Subscription, n int, within time.Duration) []*nats.Msg {
	t.Helper()
	deadline := time.Now().Add(within)
	var out []*nats.Msg
	for len(out) < n {
		m, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("got %d of %d replies: %v", len(out), n, err)
		}
		out = append(out, m)
	}
	return out
}

// vocabArtifact writes an artifact holding only a header and the vocabulary:
// enough for InfoFromArtifact and FetchArtifact, not for an engine.
func vocabArtifact(t *testing.T, dir string, synthetic bool) string {
	t.Helper()
	path := filepath.Join(dir, "vocab-only.bqa")
	w, err := artifact.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenizer.Default()
	w.Bytes(artifact.Vocab, tok.VocabBytes())
	cfg := bert.Config{VocabSize: tok.VocabSize(), HiddenSize: 8, NumLayers: 1, NumHeads: 1, IntermediateSize: 8,
		MaxPositions: 32, TypeVocabSize: 2, NumLabels: 2, Labels: []string{"no", "yes"}, Activation: bert.GELUExact, LayerNormEps: 1e-12}
	if err := w.Close(artifact.Header{Model: cfg, Batch: 4, Seq: 16, Precision: artifact.FP32, Activation: bert.GELUExact,
		Lowercase: true, Synthetic: synthetic, Source: "test"}); err != nil {
		t.Fatal(err)
	}
	return path
}

func jsonReq(id, a, b string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"a":%q,"b":%q}`, id, a, b))
}
