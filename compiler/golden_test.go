package compiler_test

import (
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu"
	_ "github.com/bertq/bertq/engine/onednn"
	"github.com/bertq/bertq/internal/fixtures"
)

// Batch layouts the golden checks run in.
const (
	static = "static" // the seed's shape: each pair padded to the compiled length, with its mask
	packed = "packed" // real tokens only, as many pairs per batch as the artifact takes
)

// runPairs runs the golden pairs with the given indices through an artifact
// on a backend, using the golden encodings, in the given layout, and returns
// the logits by pair.
func runPairs(t *testing.T, path, backend, layout string, idx []int) [][]float32 {
	t.Helper()
	f, err := artifact.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := engine.Get(backend)
	if err != nil {
		t.Fatalf("backend %s: %v", backend, err)
	}
	m, err := b.Load(f, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := m.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := m.Spec()
	out := make([][]float32, 0, len(idx))
	for start := 0; start < len(idx); start += s.Batch {
		batch := idx[start:min(start+s.Batch, len(idx))]
		out = append(out, runBatch(t, r, s, layout, batch)...)
	}
	return out
}

// runBatch runs golden pairs as one batch.
func runBatch(t *testing.T, r engine.Runner, s engine.Spec, layout string, batch []int) [][]float32 {
	t.Helper()
	g := fixtures.Pairs(t)
	var in engine.Input
	for _, i := range batch {
		p := g.Pairs[i]
		n := len(p.InputIDs)
		if layout == packed {
			n = 0
			for _, m := range p.AttentionMask {
				n += int(m)
			}
			in.Lengths = append(in.Lengths, int32(n))
		} else {
			in.AttentionMask = append(in.AttentionMask, p.AttentionMask...)
		}
		in.InputIDs = append(in.InputIDs, p.InputIDs[:n]...)
		in.TokenTypeIDs = append(in.TokenTypeIDs, p.TokenTypeIDs[:n]...)
	}
	if layout == static {
		in = engine.Static(s, engine.Input{InputIDs: in.InputIDs, TokenTypeIDs: in.TokenTypeIDs, AttentionMask: in.AttentionMask, Lengths: seqLens(len(batch), s.Seq)})
	}
	logits := make([]float32, s.Batch*s.Labels)
	if err := r.Run(in, logits); err != nil {
		t.Fatal(err)
	}
	out := make([][]float32, len(batch))
	for i := range out {
		out[i] = append([]float32(nil), logits[i*s.Labels:(i+1)*s.Labels]...)
	}
	return out
}

func seqLens(n, seq int) []int32 {
	l := make([]int32, n)
	for i := range l {
		l[i] = int32(seq)
	}
	return l
}

// maxDiff compares logits with golden float64 logits and returns the largest
// absolute difference, logging the worst pair.
func maxDiff(t *testing.T, got [][]float32, want [][]float64, idx []int) float64 {
	t.Helper()
	worst, at := 0.0, -1
	for i, p := range idx {
		for l := range want[p] {
			d := math.Abs(float64(got[i][l]) - want[p][l])
			if math.IsNaN(d) || d > worst {
				worst, at = d, p
			}
		}
	}
	t.Logf("max |Δlogit| = %.3g (worst pair %d)", worst, at)
	return worst
}

func compile(t *testing.T, spec string, opts compiler.Options) string {
	t.Helper()
	src, err := compiler.LoadSource(spec)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "model.bqa")
	res, err := compiler.Compile(src, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	if v := res.Header.Verification; v != nil {
		t.Logf("compile verification: max |Δlogit| %.3g on %s", v.MaxAbsLogitDiff, v.Backend)
	}
	return out
}

func allPairs(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// fastBackends are the backends every golden check runs on: the plain-Go one
// always, and oneDNN, which CI builds with cgo and must have.
func fastBackends(t *testing.T) []string {
	if _, err := engine.Get("onednn"); err != nil {
		t.Fatalf("the oneDNN engine is required for this test: %v", err)
	}
	return []string{"go", "onednn"}
}

func TestGoldenSmallModelsFP32(t *testing.T) {
	g := fixtures.Pairs(t)
	for _, name := range []string{"tiny-fp32", "small-bf16"} {
		opts := compiler.DefaultOptions()
		opts.Precision = artifact.FP32
		path := compile(t, fixtures.ModelDir(t, name), opts)
		idx := allPairs(len(g.Pairs))
		for _, b := range fastBackends(t) {
			for _, layout := range []string{static, packed} {
				t.Run(fmt.Sprintf("%s/%s/%s", name, b, layout), func(t *testing.T) {
					if d := maxDiff(t, runPairs(t, path, b, layout, idx), g.Models[name].Logits, idx); !(d <= 1e-4) {
						t.Errorf("max |Δlogit| %.3g > 1e-4", d)
					}
				})
			}
		}
	}
}

// A pair's logits are the same (within 1e-5 in fp32) alone and in any
// batch: among pairs of other lengths, with the truncated 128-token ones,
// with the shortest, static or packed.
func TestGoldenPackedEqualsAlone(t *testing.T) {
	g := fixtures.Pairs(t)
	opts := compiler.DefaultOptions()
	opts.Precision = artifact.FP32
	opts.Verify = false
	path := compile(t, fixtures.ModelDir(t, "tiny-fp32"), opts)
	shortest := 0
	for i, p := range g.Pairs {
		if realTokens(p) < realTokens(g.Pairs[shortest]) {
			shortest = i
		}
	}
	batches := [][]int{{0, 9, 17, 25}, {32, 33, 34, 35}, {shortest, 32, 5}, {shortest}, {35, shortest, 1, 2}}
	for _, b := range fastBackends(t) {
		t.Run(b, func(t *testing.T) {
			alone := map[int][]float32{}
			for i := range g.Pairs {
				alone[i] = runPairs(t, path, b, static, []int{i})[0]
			}
			for _, layout := range []string{static, packed} {
				for _, batch := range batches {
					for k, got := range runPairs(t, path, b, layout, batch) {
						if d := diff32(got, alone[batch[k]]); d > 1e-5 {
							t.Errorf("%s batch %v: pair %d is %.3g off itself alone (want ≤ 1e-5)", layout, batch, batch[k], d)
						}
					}
				}
			}
		})
	}
}

func realTokens(p fixtures.Pair) int {
	n := 0
	for _, m := range p.AttentionMask {
		n += int(m)
	}
	return n
}

func diff32(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// int8 on the small models: their hidden sizes (64, 128) give every token
// few values to share a quantization scale with, so the error is larger
// than BERT-Large's; the bound only catches wiring mistakes (O(1)).
func TestGoldenSmallModelsInt8(t *testing.T) {
	g := fixtures.Pairs(t)
	idx := allPairs(len(g.Pairs))
	for _, name := range []string{"tiny-fp32", "small-bf16"} {
		opts := compiler.DefaultOptions()
		opts.Precision = artifact.INT8
		path := compile(t, fixtures.ModelDir(t, name), opts)
		for _, layout := range []string{static, packed} {
			t.Run(name+"/"+layout, func(t *testing.T) {
				got := runPairs(t, path, "onednn", layout, idx)
				d := maxDiff(t, got, g.Models[name].Logits, idx)
				t.Logf("labels that differ from float64: %d of %d", labelFlips(got, g.Models[name].Logits, idx), len(idx))
				if !(d <= 0.2) {
					t.Errorf("max |Δlogit| %.3g > 0.2", d)
				}
			})
		}
	}
}

// labelFlips counts pairs whose argmax differs from float64's.
func labelFlips(got [][]float32, want [][]float64, idx []int) int {
	n := 0
	for i, p := range idx {
		a, b := 0, 0
		for l := range want[p] {
			if got[i][l] > got[i][a] {
				a = l
			}
			if want[p][l] > want[p][b] {
				b = l
			}
		}
		if a != b {
			n++
		}
	}
	return n
}

func TestGoldenSyntheticLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: BERT-Large golden checks take minutes")
	}
	fastBackends(t)
	g := fixtures.Pairs(t)
	want := g.Models["synthetic-large"].Logits
	largePairs := allPairs(len(g.Pairs))
	for _, tc := range []struct {
		precision artifact.Precision
		tol       float64
	}{{artifact.FP32, 1e-3}, {artifact.BF16, 0.015}, {artifact.INT8, int8Bound}} {
		t.Run(string(tc.precision), func(t *testing.T) {
			opts := compiler.DefaultOptions()
			opts.Precision = tc.precision
			opts.Verify = tc.precision != artifact.FP32
			path := compile(t, "synthetic:bert-large", opts)
			for _, layout := range []string{static, packed} {
				got := runPairs(t, path, "onednn", layout, largePairs)
				d := maxDiff(t, got, want, largePairs)
				if !(d <= tc.tol) {
					t.Errorf("%s: max |Δlogit| %.3g > %g", layout, d, tc.tol)
				}
				if n := labelFlips(got, want, largePairs); n != 0 {
					t.Errorf("%s: %d labels differ from float64's", layout, n)
				}
			}
		})
	}
}

// int8Bound is ONNX Runtime's int8 error on these pairs (0.022): bertq's
// int8 must beat it.
const int8Bound = 0.022
