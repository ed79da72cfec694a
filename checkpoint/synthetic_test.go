package checkpoint

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/internal/fixtures"
)

func TestFNV1a64(t *testing.T) {
	if got := fnv1a64("bert.embeddings.word_embeddings.weight"); got != 0x4b7e64761fa81b3f {
		t.Errorf("fnv1a64 = %#x, want 0x4b7e64761fa81b3f", got)
	}
	if got := fnv1a64(""); got != 0xCBF29CE484222325 {
		t.Errorf("fnv1a64(\"\") = %#x", got)
	}
}

func TestSyntheticValueExample(t *testing.T) {
	name := "bert.embeddings.word_embeddings.weight"
	want := []float32{-0.022978209, -0.012357389, 0.029402634, -0.016149061}
	for i, w := range want {
		if got := SyntheticValue(name, i); got != w {
			t.Errorf("SyntheticValue(%d) = %v, want %v", i, got, w)
		}
	}
	// SyntheticFill at an offset agrees with SyntheticValue.
	buf := make([]float32, 100)
	SyntheticFill(name, buf, 12345)
	for k, v := range buf {
		if v != SyntheticValue(name, 12345+k) {
			t.Fatalf("SyntheticFill[%d] disagrees", k)
		}
	}
}

// TestSyntheticBertLargeProbes checks synthetic:bert-large bit-exactly against
// the probes (first four values, or fewer for a smaller tensor, and the
// last) of every tensor in
// golden-pairs.json.
func TestSyntheticBertLargeProbes(t *testing.T) {
	b, err := os.ReadFile(fixtures.Path(t, "golden-pairs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var golden struct {
		Models map[string]struct {
			Probes map[string][]float64 `json:"probes"`
		} `json:"models"`
	}
	if err := json.Unmarshal(b, &golden); err != nil {
		t.Fatal(err)
	}
	probes := golden.Models["synthetic-large"].Probes
	if len(probes) == 0 {
		t.Fatal("golden-pairs.json has no synthetic-large probes")
	}

	start := time.Now()
	w, info, err := Synthetic("synthetic:bert-large")
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Synthetic(synthetic:bert-large): %d parameters in %v on %d CPUs", info.Params, elapsed, runtime.GOMAXPROCS(0))

	large := bert.Large()
	if !configEqual(w.Config, large) {
		t.Errorf("config = %+v, want bert.Large()", w.Config)
	}
	specs := bert.TensorSpecs(w.Config)
	if len(probes) != len(specs) {
		t.Errorf("%d probes for %d tensors", len(probes), len(specs))
	}
	tensors := weightTensors(w)
	var params int64
	for _, s := range specs {
		params += int64(shapeSize(s.Shape))
	}
	for name, probe := range probes {
		v, ok := tensors[name]
		if !ok {
			t.Errorf("probe for unknown tensor %q", name)
			continue
		}
		// A probe is the first min(4, n) values, then the last one.
		head := min(4, len(v))
		if len(probe) != head+1 {
			t.Fatalf("probe %q has %d values for a tensor of %d", name, len(probe), len(v))
		}
		got := append(slices.Clone(v[:head]), v[len(v)-1])
		for k, p := range probe {
			want := float32(p)
			if float64(want) != p {
				t.Fatalf("probe %q[%d] = %v is not a float32", name, k, p)
			}
			if math.Float32bits(got[k]) != math.Float32bits(want) {
				t.Errorf("%s probe %d = %v (%#08x), want %v (%#08x)", name, k, got[k], math.Float32bits(got[k]), want, math.Float32bits(want))
			}
		}
	}
	if info.Params != params || params != 335_143_938 {
		t.Errorf("Params = %d, want %d (BERT-Large with a 2-way head)", info.Params, params)
	}
	if !info.Synthetic || !strings.Contains(info.Note, "meaningless") || !strings.Contains(info.Description, "meaningless") {
		t.Errorf("info does not say the weights are synthetic: %+v", info)
	}
	if info.Source != "synthetic:bert-large" || len(info.Digest) != 64 || !slices.Equal(info.DTypes, []DType{F32}) {
		t.Errorf("info = %+v", info)
	}
	// Spot-check elements in the middle of the biggest tensor.
	for _, i := range []int{1 << 20, 31_000_000, len(w.Word) / 2} {
		if w.Word[i] != SyntheticValue("bert.embeddings.word_embeddings.weight", i) {
			t.Errorf("Word[%d] disagrees with SyntheticValue", i)
		}
	}
}

func TestSyntheticSources(t *testing.T) {
	if !IsSynthetic("synthetic:bert-large") || !IsSynthetic("synthetic:xyz") || IsSynthetic("/models/synthetic") || IsSynthetic("bert-large") {
		t.Error("IsSynthetic")
	}
	_, _, err := Load("synthetic:xyz")
	if !errors.Is(err, ErrUnknownSynthetic) || !strings.Contains(err.Error(), "synthetic:xyz") || !strings.Contains(err.Error(), "synthetic:bert-large") {
		t.Errorf("Load(synthetic:xyz): err = %v, want ErrUnknownSynthetic listing synthetic:bert-large", err)
	}
	if got := SyntheticModels(); !slices.Equal(got, []string{"synthetic:bert-large"}) {
		t.Errorf("SyntheticModels = %v", got)
	}
}

func BenchmarkSyntheticBertLarge(b *testing.B) {
	for b.Loop() {
		if _, _, err := Synthetic("synthetic:bert-large"); err != nil {
			b.Fatal(err)
		}
	}
}
