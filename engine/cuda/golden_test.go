package cuda

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/fixtures"
)

// testGolden compiles the fixture checkpoints and checks the GPU's logits on
// the 36 golden pairs against the float64 references from transformers.
//
// fp32 runs must agree within 1e-3. small-bf16 compiled to bf16 runs bf16
// activations: its bound is tolBF16 (see gpu_test.go for why).
func testGolden(t *testing.T) {
	g := fixtures.Pairs(t)
	cases := []struct {
		model     string
		prec      artifact.Precision
		epilogue  bool
		tolerance float64
	}{
		{"tiny-fp32", artifact.FP32, true, 1e-3},
		{"small-bf16", artifact.FP32, true, 1e-3},  // tanh GELU by cuBLASLt's epilogue
		{"small-bf16", artifact.FP32, false, 1e-3}, // tanh GELU by gelu.cu
		{"small-bf16", artifact.BF16, true, tolBF16},
	}
	for _, c := range cases {
		name := c.model + "-" + string(c.prec)
		if !c.epilogue {
			name += "-own-gelu"
		}
		t.Run(name, func(t *testing.T) {
			ref, ok := g.Models[c.model]
			if !ok || len(ref.Logits) != len(g.Pairs) {
				t.Fatalf("golden-pairs.json has no logits for %s", c.model)
			}
			src, err := compiler.LoadSource(fixtures.ModelDir(t, c.model))
			if err != nil {
				t.Fatal(err)
			}
			opts := compiler.DefaultOptions()
			opts.Precision, opts.Verify = c.prec, false
			out := filepath.Join(t.TempDir(), c.model+".bertq")
			if _, err := compiler.Compile(src, out, opts); err != nil {
				t.Fatal(err)
			}
			m := loadWith(t, out, settings{graphs: true, geluEpilogue: c.epilogue})
			s := m.Spec()
			r, err := m.NewRunner(-1)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var worst float64
			logits := make([]float32, s.Batch*s.Labels)
			pairs := len(g.Pairs)
			if emulated() {
				pairs = 2 * s.Batch // the emulator is slow; the pairs differ in nothing it could miss
			}
			for start := 0; start < pairs; start += s.Batch {
				in := engine.Input{
					InputIDs:      make([]int32, s.Batch*s.Seq),
					TokenTypeIDs:  make([]int32, s.Batch*s.Seq),
					AttentionMask: make([]int32, s.Batch*s.Seq),
				}
				for slot := 0; slot < s.Batch; slot++ {
					p := g.Pairs[(start+slot)%len(g.Pairs)]
					copy(in.InputIDs[slot*s.Seq:], p.InputIDs)
					copy(in.TokenTypeIDs[slot*s.Seq:], p.TokenTypeIDs)
					copy(in.AttentionMask[slot*s.Seq:], p.AttentionMask)
				}
				if err := r.Run(in, logits); err != nil {
					t.Fatal(err)
				}
				for slot := 0; slot < s.Batch && start+slot < pairs; slot++ {
					for l := 0; l < s.Labels; l++ {
						d := math.Abs(float64(logits[slot*s.Labels+l]) - ref.Logits[start+slot][l])
						if math.IsNaN(d) {
							t.Fatalf("pair %d: NaN logit", start+slot)
						}
						worst = math.Max(worst, d)
					}
				}
			}
			t.Logf("%s: max |cuda - float64 reference| = %.3g over %d pairs", name, worst, pairs)
			if worst > c.tolerance {
				t.Errorf("%s: max logit error %.3g > %g", name, worst, c.tolerance)
			}
		})
	}
}
