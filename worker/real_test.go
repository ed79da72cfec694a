package worker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/checkpoint"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/tokenizer"
	"github.com/bertq/bertq/worker"
)

var (
	tinyOnce sync.Once
	tinyPath string
	tinyErr  error
	tinyDir  string
)

// tinyArtifact compiles the tiny-fp32 checkpoint for batch 4 × seq 128 fp32,
// once per test binary.
func tinyArtifact(t *testing.T) string {
	t.Helper()
	src := fixtures.ModelDir(t, "tiny-fp32")
	tinyOnce.Do(func() {
		tinyDir, tinyErr = os.MkdirTemp("", "bertq-worker-test-")
		if tinyErr != nil {
			return
		}
		w, info, err := checkpoint.Load(src)
		if err != nil {
			tinyErr = err
			return
		}
		opts := compiler.Options{Batch: 4, Seq: 128, Precision: artifact.FP32, GELU: "auto", Backend: "go"}
		tinyPath = filepath.Join(tinyDir, "tiny.bqa")
		_, tinyErr = compiler.Compile(compiler.Source{Name: src, SHA256: info.Digest, Weights: w, Tokenizer: tokenizer.Default()}, tinyPath, opts)
	})
	if tinyErr != nil {
		t.Fatalf("compiling tiny-fp32: %v", tinyErr)
	}
	return tinyPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if tinyDir != "" {
		os.RemoveAll(tinyDir)
	}
	os.Exit(code)
}

type goldenPair struct {
	A             string  `json:"a"`
	B             string  `json:"b"`
	InputIDs      []int32 `json:"input_ids"`
	TokenTypeIDs  []int32 `json:"token_type_ids"`
	AttentionMask []int32 `json:"attention_mask"`
}

func loadGolden(t *testing.T) ([]goldenPair, [][]float64) {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path(t, "golden-pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g struct {
		Pairs  []goldenPair `json:"pairs"`
		Models map[string]struct {
			Logits [][]float64 `json:"logits"`
		} `json:"models"`
	}
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g.Pairs, g.Models["tiny-fp32"].Logits
}

// directRun runs the pairs' golden encodings through a Runner of m, four at
// a time, and returns each pair's logits.
func directRun(t *testing.T, m engine.Model, pairs []goldenPair) [][]float32 {
	t.Helper()
	r, err := m.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := m.Spec()
	out := make([][]float32, len(pairs))
	for start := 0; start < len(pairs); start += s.Batch {
		in := engine.Input{InputIDs: make([]int32, s.Batch*s.Seq), TokenTypeIDs: make([]int32, s.Batch*s.Seq), AttentionMask: make([]int32, s.Batch*s.Seq)}
		for slot := 0; slot < s.Batch; slot++ {
			p := pairs[min(start+slot, len(pairs)-1)]
			copy(in.InputIDs[slot*s.Seq:], p.InputIDs)
			copy(in.TokenTypeIDs[slot*s.Seq:], p.TokenTypeIDs)
			copy(in.AttentionMask[slot*s.Seq:], p.AttentionMask)
		}
		logits := make([]float32, s.Batch*s.Labels)
		if err := r.Run(in, logits); err != nil {
			t.Fatal(err)
		}
		for slot := 0; slot < s.Batch && start+slot < len(pairs); slot++ {
			out[start+slot] = logits[slot*s.Labels : (slot+1)*s.Labels]
		}
	}
	return out
}

// TestWorkerRealModel serves the compiled tiny-fp32 model with 4 loops and
// sends every golden pair at once, as text (JSON and msgpack) and
// pre-tokenized, once packed and once with --pad static: every reply equals a
// direct engine run of its own input at the static shape, and the packed
// replies equal the static ones, within 1e-5 (fp32).
func TestWorkerRealModel(t *testing.T) {
	path := tinyArtifact(t)
	pairs, golden := loadGolden(t)
	if raceEnabled {
		pairs = pairs[:6]
		t.Logf("race detector on: sending %d of the golden pairs", len(pairs))
	}
	e := newEnv(t, true)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e.putModel(t, "tiny", data)

	f, err := worker.FetchArtifact(context.Background(), e.js, "tiny", filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := engine.Get("go")
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.Load(f, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info, err := worker.InfoFromArtifact("tiny", f)
	if err != nil {
		t.Fatal(err)
	}
	want := directRun(t, m, pairs)
	for i := range pairs {
		for l := range want[i] {
			if d := math.Abs(float64(want[i][l]) - golden[i][l]); d > 1e-3 {
				t.Fatalf("pair %d: the engine itself is off the float64 reference by %g", i, d)
			}
		}
	}
	static := serveGolden(t, e, m, info, pairs, want, worker.PadStatic)
	packed := serveGolden(t, e, m, info, pairs, want, worker.PadNone)
	if len(packed) != len(static) {
		t.Fatalf("%d packed replies, %d static", len(packed), len(static))
	}
	worst := 0.0
	for id, p := range packed {
		for l := range p {
			worst = max(worst, math.Abs(float64(p[l]-static[id][l])))
		}
	}
	if worst > 1e-5 {
		t.Errorf("packed replies differ from static ones by up to %g, want ≤ 1e-5", worst)
	}
	t.Logf("%d replies each way; packed vs static max |Δlogit| %.2g", len(packed), worst)
}

// serveGolden runs a worker with the given batch layout, sends every pair
// twice (text and pre-tokenized) through the intake at once, checks each
// reply against want, stops the worker, and returns the logits by request id.
func serveGolden(t *testing.T, e *env, m engine.Model, info worker.Info, pairs []goldenPair, want [][]float32, pad worker.Pad) map[string][]float32 {
	t.Helper()
	rw := startWorker(t, e, m, info, worker.WithParallel(4), worker.WithPad(pad))
	type result struct {
		i   int
		r   schemas.InferReply
		err error
	}
	results := make(chan result, 2*len(pairs))
	var wg sync.WaitGroup
	send := func(i int, enc schemas.Encoding, req schemas.InferRequest) {
		defer wg.Done()
		body, err := schemas.Marshal(enc, &req)
		if err != nil {
			results <- result{i: i, err: err}
			return
		}
		msg := nats.NewMsg(schemas.InferSubject("tiny"))
		msg.Data = body
		msg.Header.Set(schemas.HeaderContentType, enc.ContentType())
		resp, err := e.nc.RequestMsg(msg, 60*time.Second)
		if err != nil {
			results <- result{i: i, err: err}
			return
		}
		var r schemas.InferReply
		err = schemas.Unmarshal(enc, resp.Data, &r)
		results <- result{i, r, err}
	}
	for i, p := range pairs {
		enc := schemas.JSON
		if i%3 == 0 {
			enc = schemas.Msgpack
		}
		wg.Add(2)
		// Ids differ between runs (the stream de-duplicates); out keys do not.
		go send(i, enc, schemas.InferRequest{ID: fmt.Sprintf("%s-text-%d", pad, i), A: p.A, B: p.B})
		go send(i, schemas.JSON, schemas.InferRequest{ID: fmt.Sprintf("%s-ids-%d", pad, i), InputIDs: p.InputIDs, TokenTypeIDs: p.TokenTypeIDs, AttentionMask: p.AttentionMask})
	}
	wg.Wait()
	close(results)
	out := map[string][]float32{}
	tokens := 0
	for res := range results {
		if res.err != nil {
			t.Fatalf("%s: pair %d: %v", pad, res.i, res.err)
		}
		r := res.r
		if r.Error != nil || r.BatchSize < 1 || r.BatchSize > 4 || len(r.Logits) != 2 {
			t.Fatalf("%s: pair %d: reply %+v", pad, res.i, r)
		}
		for l := range r.Logits {
			if d := math.Abs(float64(r.Logits[l] - want[res.i][l])); d > 1e-5 {
				t.Errorf("%s: %s: logits %v, a direct run gives %v", pad, r.ID, r.Logits, want[res.i])
				break
			}
		}
		idx := schemas.Argmax(want[res.i])
		if r.LabelIndex != idx || r.Message != map[int]string{0: "not paraphrase", 1: "paraphrase"}[idx] {
			t.Errorf("%s: %s: label %d %q", pad, r.ID, r.LabelIndex, r.Message)
		}
		out[strings.TrimPrefix(r.ID, string(pad)+"-")] = r.Logits
		for _, v := range pairs[res.i].AttentionMask {
			tokens += int(v)
		}
	}
	e.consumerIdle(t, "tiny")
	rw.stop(t)
	s := rw.w.Stats()
	n := uint64(2 * len(pairs))
	wantPadded, wantRows := 4*s.Batches-n, 4*128*s.Batches
	if pad == worker.PadNone {
		wantPadded, wantRows = 0, uint64(tokens)
	}
	if len(out) != int(n) || s.Answered != n || s.RealSlots != n || s.PaddedSlots != wantPadded || s.Tokens != uint64(tokens) || s.Rows != wantRows {
		t.Errorf("%s: %d replies; stats %+v; want %d padded slots, %d tokens, %d rows", pad, len(out), s, wantPadded, tokens, wantRows)
	}
	return out
}
