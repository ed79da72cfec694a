package bert_test

import (
	"errors"
	"math"
	"testing"

	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/checkpoint"
	"github.com/bertq/bertq/internal/fixtures"
)

func TestFLOPsBERTLarge(t *testing.T) {
	c := bert.Large()
	if got := c.FLOPs(128) / 1e9; math.Abs(got-78.9) > 0.05 {
		t.Fatalf("BERT-Large FLOPs at 128 = %.2f G, want 78.9 G", got)
	}
}

// The reference forward is the oracle the compiler verifies against, so it is
// itself checked against Hugging Face's float64 logits, on unpadded tokens.
func TestReferenceForwardMatchesGolden(t *testing.T) {
	g := fixtures.Pairs(t)
	for _, name := range []string{"tiny-fp32", "small-bf16"} {
		w, _, err := checkpoint.Open(fixtures.ModelDir(t, name))
		if err != nil {
			t.Fatal(err)
		}
		var worst float64
		for i, p := range g.Pairs {
			n := 0
			for _, m := range p.AttentionMask {
				n += int(m)
			}
			got, err := w.Forward(p.InputIDs[:n], p.TokenTypeIDs[:n])
			if err != nil {
				t.Fatal(err)
			}
			for l, v := range got {
				worst = math.Max(worst, math.Abs(v-g.Models[name].Logits[i][l]))
			}
		}
		t.Logf("%s: max |Δlogit| %.3g", name, worst)
		if worst > 1e-6 {
			t.Errorf("%s: reference forward off by %.3g", name, worst)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := bert.Large()
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*bert.Config){
		"heads do not divide hidden": func(c *bert.Config) { c.NumHeads = 7 },
		"no layers":                  func(c *bert.Config) { c.NumLayers = 0 },
		"unknown activation":         func(c *bert.Config) { c.Activation = "relu" },
		"label names mismatch":       func(c *bert.Config) { c.Labels = []string{"a"} },
		"eps":                        func(c *bert.Config) { c.LayerNormEps = 0 },
		"pad outside vocab":          func(c *bert.Config) { c.PadTokenID = c.VocabSize },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); !errors.Is(err, bert.ErrInvalidConfig) {
			t.Errorf("%s: got %v", name, err)
		}
	}
}

func TestActivations(t *testing.T) {
	for s, want := range map[string]bert.Activation{
		"gelu": bert.GELUExact, "gelu_new": bert.GELUTanh, "gelu_pytorch_tanh": bert.GELUTanh, "crude": bert.GELUCrude,
	} {
		if a, err := bert.ParseActivation(s); err != nil || a != want {
			t.Errorf("%s → %v, %v", s, a, err)
		}
	}
	// Known values: GELU(1) = 0.8413447, tanh approximation 0.8411920, x·σ(1.702x) 0.8457957.
	for a, want := range map[bert.Activation]float64{bert.GELUExact: 0.8413447460685429, bert.GELUTanh: 0.8411919906082768, bert.GELUCrude: 0.8457957} {
		if got := a.Apply(1); math.Abs(got-want) > 1e-7 {
			t.Errorf("%s(1) = %.9f, want %.9f", a, got, want)
		}
	}
}
