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

// runPairs runs the golden pairs with the given indices through an artifact
// on a backend, using the golden encodings, and returns the logits by pair.
func runPairs(t *testing.T, path, backend string, idx []int) [][]float32 {
	t.Helper()
	g := fixtures.Pairs(t)
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
	out := make([][]float32, len(idx))
	logits := make([]float32, s.Batch*s.Labels)
	for start := 0; start < len(idx); start += s.Batch {
		in := engine.Input{
			InputIDs:      make([]int32, s.Batch*s.Seq),
			TokenTypeIDs:  make([]int32, s.Batch*s.Seq),
			AttentionMask: make([]int32, s.Batch*s.Seq),
		}
		for slot := 0; slot < s.Batch; slot++ {
			p := g.Pairs[idx[(start+slot)%len(idx)]]
			copy(in.InputIDs[slot*s.Seq:], p.InputIDs)
			copy(in.TokenTypeIDs[slot*s.Seq:], p.TokenTypeIDs)
			copy(in.AttentionMask[slot*s.Seq:], p.AttentionMask)
		}
		if err := r.Run(in, logits); err != nil {
			t.Fatal(err)
		}
		for slot := 0; slot < s.Batch && start+slot < len(idx); slot++ {
			out[start+slot] = append([]float32(nil), logits[slot*s.Labels:(slot+1)*s.Labels]...)
		}
	}
	return out
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
			t.Run(fmt.Sprintf("%s/%s", name, b), func(t *testing.T) {
				if d := maxDiff(t, runPairs(t, path, b, idx), g.Models[name].Logits, idx); !(d <= 1e-4) {
					t.Errorf("max |Δlogit| %.3g > 1e-4", d)
				}
			})
		}
	}
}

// largePairs are the pairs the BERT-Large checks run: the first eight and the
// four that need truncation.
var largePairs = []int{0, 1, 2, 3, 4, 5, 6, 7, 32, 33, 34, 35}

func TestGoldenSyntheticLarge(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short mode: BERT-Large golden checks take about a minute")
	}
	fastBackends(t)
	g := fixtures.Pairs(t)
	want := g.Models["synthetic-large"].Logits
	for _, tc := range []struct {
		precision artifact.Precision
		tol       float64
	}{{artifact.FP32, 1e-3}, {artifact.BF16, 0.015}} {
		t.Run(string(tc.precision), func(t *testing.T) {
			opts := compiler.DefaultOptions()
			opts.Precision = tc.precision
			opts.Verify = tc.precision == artifact.BF16
			path := compile(t, "synthetic:bert-large", opts)
			if d := maxDiff(t, runPairs(t, path, "onednn", largePairs), want, largePairs); !(d <= tc.tol) {
				t.Errorf("max |Δlogit| %.3g > %g", d, tc.tol)
			}
		})
	}
}
