package enginetest

import (
	"errors"
	"math/rand"
	"path/filepath"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

// Fixture is a loaded toy artifact with one runner.
type Fixture struct {
	File    *artifact.File
	Weights *engine.Weights
	Model   engine.Model
	Runner  engine.Runner
}

// Load writes a toy artifact and loads it on backend; everything is closed
// when the test ends.
func Load(t testing.TB, backend string, opts engine.Options, c bert.Config, batch, seq int, prec artifact.Precision, seed int64) *Fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.bqa")
	WriteArtifact(t, path, c, batch, seq, prec, seed)
	f, err := artifact.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	be, err := engine.Get(backend)
	if err != nil {
		t.Fatal(err)
	}
	m, err := be.Load(f, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	w, err := engine.ReadWeights(f)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &Fixture{File: f, Weights: w, Model: m, Runner: r}
}

// Run runs one batch and returns its logits.
func (fx *Fixture) Run(t testing.TB, in engine.Input) []float32 {
	t.Helper()
	s := fx.Model.Spec()
	logits := make([]float32, in.Seqs(s)*s.Labels)
	if err := fx.Runner.Run(in, logits); err != nil {
		t.Fatal(err)
	}
	return logits
}

// Conformance checks what every backend must do with packed batches, on an
// fp32 toy model (batch 4, seq 24): a sequence's logits are the same (within
// 1e-5) alone, packed among others of any length, and in the static shape;
// they match the float64 reference within 1e-4; and malformed batches are
// refused with engine.ErrInput.
func Conformance(t *testing.T, backend string, opts engine.Options) {
	const batch, seq = 4, 24
	c := SmallConfig(bert.GELUExact)
	fx := Load(t, backend, opts, c, batch, seq, artifact.FP32, 7)
	L := c.NumLabels
	rng := rand.New(rand.NewSource(11))
	lengths := []int{seq, 1, 7, 13, 2, seq, 19, 3}
	seqs := make([]Seq, len(lengths))
	alone := make([][]float32, len(lengths))
	for i, n := range lengths {
		seqs[i] = RandomSeq(rng, c, n)
		alone[i] = fx.Run(t, Pack(seqs[i]))
		want := Reference(fx.Weights, Pack(seqs[i]), Emulate{})
		if d := MaxDiff(alone[i], want); d > 1e-4 {
			t.Errorf("sequence of %d tokens alone: %.3g off the float64 reference (want ≤ 1e-4)", n, d)
		}
	}
	check := func(name string, idx []int, got []float32) {
		t.Helper()
		for slot, i := range idx {
			want64 := make([]float64, L)
			for l := range want64 {
				want64[l] = float64(alone[i][l])
			}
			if d := MaxDiff(got[slot*L:(slot+1)*L], want64); d > 1e-5 {
				t.Errorf("%s: slot %d (%d tokens) is %.3g off the same sequence alone (want ≤ 1e-5)", name, slot, lengths[i], d)
			}
		}
	}
	for _, idx := range [][]int{{0, 1, 2, 3}, {4, 5, 6, 7}, {1, 4, 7}, {3, 2}, {5}, {1, 1, 1, 1}} {
		pick := make([]Seq, len(idx))
		for j, i := range idx {
			pick[j] = seqs[i]
		}
		packed := Pack(pick...)
		check("packed", idx, fx.Run(t, packed))
		check("static", idx, fx.Run(t, engine.Static(fx.Model.Spec(), packed))[:len(idx)*L])
	}
	t.Run("bad batches", func(t *testing.T) { badBatches(t, fx, seqs[0], seq) })
}

func badBatches(t *testing.T, fx *Fixture, s Seq, seq int) {
	logits := make([]float32, 16*fx.Model.Spec().Labels)
	cases := map[string]engine.Input{
		"too many sequences": Pack(s, s, s, s, s),
		"no sequence":        {InputIDs: []int32{}, TokenTypeIDs: []int32{}, Lengths: []int32{}},
		"empty sequence":     {InputIDs: s.IDs, TokenTypeIDs: s.Types, Lengths: []int32{0, int32(len(s.IDs))}},
		"lengths short":      {InputIDs: s.IDs, TokenTypeIDs: s.Types, Lengths: []int32{int32(len(s.IDs) - 1)}},
		"too long":           Pack(Seq{IDs: make([]int32, seq+1), Types: make([]int32, seq+1)}),
		"types short":        {InputIDs: s.IDs, TokenTypeIDs: s.Types[1:], Lengths: []int32{int32(len(s.IDs))}},
		"mask all zero":      {InputIDs: s.IDs, TokenTypeIDs: s.Types, AttentionMask: make([]int32, len(s.IDs)), Lengths: []int32{int32(len(s.IDs))}},
		"id too big":         Pack(Seq{IDs: []int32{int32(fx.Weights.Config.VocabSize)}, Types: []int32{0}}),
		"bad type":           Pack(Seq{IDs: []int32{1}, Types: []int32{2}}),
	}
	for name, in := range cases {
		if err := fx.Runner.Run(in, logits); !errors.Is(err, engine.ErrInput) {
			t.Errorf("%s: got %v, want ErrInput", name, err)
		}
	}
	if err := fx.Runner.Run(Pack(s, s), logits[:1]); !errors.Is(err, engine.ErrInput) {
		t.Errorf("short logits: got %v, want ErrInput", err)
	}
	if err := fx.Runner.Run(Pack(s), logits); err != nil {
		t.Errorf("a good batch after bad ones: %v", err)
	}
}
