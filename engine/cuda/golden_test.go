package cuda

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
)

// EnvTestdata points the golden test at the shared test data when it does not
// sit in a shared/testdata beside the working directory or above (on a GPU
// machine the test binary runs from a folder of its own).
const EnvTestdata = "BERTQ_TESTDATA"

// findTestdata returns the shared test data folder, or "" when absent.
func findTestdata() string {
	if d := os.Getenv(EnvTestdata); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, "shared", "testdata")
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

type goldenFile struct {
	Pairs []struct {
		InputIDs      []int32 `json:"input_ids"`
		TokenTypeIDs  []int32 `json:"token_type_ids"`
		AttentionMask []int32 `json:"attention_mask"`
	} `json:"pairs"`
	Models map[string]struct {
		Logits [][]float64 `json:"logits"`
	} `json:"models"`
}

// testGolden compiles the shared checkpoints and checks the GPU's logits on
// the 36 golden pairs against the float64 references from transformers.
//
// fp32 runs must agree within 1e-3. small-bf16 compiled to bf16 runs bf16
// activations: its bound is tolBF16 (see gpu_test.go for why).
func testGolden(t *testing.T) {
	td := findTestdata()
	if td == "" {
		wd, _ := os.Getwd()
		t.Skipf("shared test data not found (no shared/testdata in %s or above, %s unset): golden logits not checked", wd, EnvTestdata)
	}
	raw, err := os.ReadFile(filepath.Join(td, "golden-pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
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
			src, err := compiler.LoadSource(filepath.Join(td, "models", c.model))
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
