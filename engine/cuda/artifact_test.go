package cuda

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu" // the "go" backend, the reference
)

// testModel describes a random-weight artifact in the compiled layout.
type testModel struct {
	cfg        bert.Config
	batch, seq int
	prec       artifact.Precision
}

func smallConfig(hidden, heads, inter, layers, labels int, act bert.Activation) bert.Config {
	return bert.Config{
		VocabSize: 211, HiddenSize: hidden, NumLayers: layers, NumHeads: heads, IntermediateSize: inter,
		MaxPositions: 256, TypeVocabSize: 2, NumLabels: labels, Activation: act, LayerNormEps: 1e-12,
	}
}

// writeRandomArtifact writes tm with weights drawn from seed, scaled so that
// activations stay O(1) through the layers (as in a trained model).
func writeRandomArtifact(tb testing.TB, dir string, tm testModel, seed uint64) string {
	tb.Helper()
	c := tm.cfg
	H, I, L := c.HiddenSize, c.IntermediateSize, c.NumLabels
	rng := rand.New(rand.NewPCG(seed, 0x5eed))
	fill := func(n int, center, scale float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(center + scale*(2*rng.Float64()-1))
		}
		return v
	}
	path := filepath.Join(dir, "model.bertq")
	w, err := artifact.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	mat := w.F32
	if tm.prec == artifact.BF16 {
		mat = w.BF16
	}
	w.F32(artifact.WordEmbeddings, []int{c.VocabSize, H}, fill(c.VocabSize*H, 0, 1))
	w.F32(artifact.PositionEmbeddings, []int{c.MaxPositions, H}, fill(c.MaxPositions*H, 0, 0.5))
	w.F32(artifact.TokenTypeEmbeddings, []int{c.TypeVocabSize, H}, fill(c.TypeVocabSize*H, 0, 0.5))
	w.F32(artifact.EmbNormGamma, []int{H}, fill(H, 1, 0.1))
	w.F32(artifact.EmbNormBeta, []int{H}, fill(H, 0, 0.1))
	sH, sI := math.Sqrt(3/float64(H)), math.Sqrt(3/float64(I))
	for l := 0; l < c.NumLayers; l++ {
		n := func(part string) string { return artifact.LayerTensor(l, part) }
		qkv := fill(H*3*H, 0, sH)
		// Q carries the folded 1/√d scale, as compiled artifacts do; the
		// extra ×2 makes the attention less uniform, so masking matters.
		scale := 2 / math.Sqrt(float64(c.HeadDim()))
		for k := 0; k < H; k++ {
			for j := 0; j < H; j++ {
				qkv[k*3*H+j] *= float32(scale)
			}
		}
		mat(n(artifact.QKVWeight), []int{H, 3 * H}, qkv)
		w.F32(n(artifact.QKVBias), []int{3 * H}, fill(3*H, 0, 0.1))
		mat(n(artifact.AttnOutWeight), []int{H, H}, fill(H*H, 0, sH))
		w.F32(n(artifact.AttnOutBias), []int{H}, fill(H, 0, 0.1))
		w.F32(n(artifact.AttnNormGamma), []int{H}, fill(H, 1, 0.1))
		w.F32(n(artifact.AttnNormBeta), []int{H}, fill(H, 0, 0.1))
		mat(n(artifact.FFNInWeight), []int{H, I}, fill(H*I, 0, sH))
		w.F32(n(artifact.FFNInBias), []int{I}, fill(I, 0, 0.1))
		mat(n(artifact.FFNOutWeight), []int{I, H}, fill(I*H, 0, sI))
		w.F32(n(artifact.FFNOutBias), []int{H}, fill(H, 0, 0.1))
		w.F32(n(artifact.FFNNormGamma), []int{H}, fill(H, 1, 0.1))
		w.F32(n(artifact.FFNNormBeta), []int{H}, fill(H, 0, 0.1))
	}
	w.F32(artifact.PoolerWeight, []int{H, H}, fill(H*H, 0, sH))
	w.F32(artifact.PoolerBias, []int{H}, fill(H, 0, 0.1))
	w.F32(artifact.ClassifierWeight, []int{H, L}, fill(H*L, 0, math.Sqrt(3/float64(H))))
	w.F32(artifact.ClassifierBias, []int{L}, fill(L, 0, 0.1))
	w.Bytes(artifact.Vocab, []byte("[PAD]\n[UNK]\n[CLS]\n[SEP]\n"))
	hdr := artifact.Header{
		Model: c, Batch: tm.batch, Seq: tm.seq, Precision: tm.prec, Activation: c.Activation,
		Lowercase: true, Source: "random test weights", Synthetic: true, Compiler: "engine/cuda test",
	}
	if err := w.Close(hdr); err != nil {
		tb.Fatal(err)
	}
	return path
}

// randomInput is a static batch of full, partly padded and one-token
// sequences; with holes, every fourth sequence also has masked keys inside.
// (A sequence with no attended key at all is refused by engine.Check.)
func randomInput(s engine.Spec, vocab int, seed uint64, holes bool) engine.Input {
	rng := rand.New(rand.NewPCG(seed, 7))
	n := s.Batch * s.Seq
	in := engine.Input{InputIDs: make([]int32, n), TokenTypeIDs: make([]int32, n), AttentionMask: make([]int32, n)}
	for b := 0; b < s.Batch; b++ {
		real := s.Seq
		switch {
		case b%4 == 1:
			real = 1 + rng.IntN(s.Seq)
		case b%4 == 2:
			real = 1
		}
		split := real / 2
		for t := 0; t < s.Seq; t++ {
			i := b*s.Seq + t
			if t < real {
				in.InputIDs[i] = int32(rng.IntN(vocab))
				in.AttentionMask[i] = 1
				if holes && b%4 == 3 && t > 0 && t%3 == 0 {
					in.AttentionMask[i] = 0
				}
				if t >= split {
					in.TokenTypeIDs[i] = 1
				}
			}
		}
	}
	return in
}

// runBackend loads path with the named backend and runs each input.
func runBackend(tb testing.TB, name, path string, ins ...engine.Input) [][]float32 {
	tb.Helper()
	f, err := artifact.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	b, err := engine.Get(name)
	if err != nil {
		tb.Fatal(err)
	}
	m, err := b.Load(f, engine.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	defer m.Close()
	return runModel(tb, m, ins...)
}

func runModel(tb testing.TB, m engine.Model, ins ...engine.Input) [][]float32 {
	tb.Helper()
	r, err := m.NewRunner(-1)
	if err != nil {
		tb.Fatal(err)
	}
	defer r.Close()
	s := m.Spec()
	var out [][]float32
	for _, in := range ins {
		logits := make([]float32, s.Batch*s.Labels)
		if err := r.Run(in, logits); err != nil {
			tb.Fatal(err)
		}
		out = append(out, logits)
	}
	return out
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
		if math.IsNaN(float64(a[i])) != math.IsNaN(float64(b[i])) {
			return math.Inf(1)
		}
	}
	return d
}

// The helper itself is checked on the CPU, so a GPU run only has the backend
// to doubt.
func TestRandomArtifactRunsOnGo(t *testing.T) {
	tm := testModel{cfg: smallConfig(32, 2, 64, 1, 3, bert.GELUExact), batch: 4, seq: 9, prec: artifact.BF16}
	path := writeRandomArtifact(t, t.TempDir(), tm, 1)
	s := engine.Spec{Batch: 4, Seq: 9, Labels: 3}
	in := randomInput(s, tm.cfg.VocabSize, 2, true)
	out := runBackend(t, "go", path, in, in)
	if len(out) != 2 || maxAbsDiff(out[0], out[1]) != 0 {
		t.Fatalf("the go backend is not deterministic? %v", out)
	}
	var spread float64
	for _, v := range out[0] {
		if math.IsNaN(float64(v)) {
			t.Fatalf("NaN logits %v", out[0])
		}
		spread = math.Max(spread, math.Abs(float64(v)))
	}
	if spread < 1e-3 {
		t.Errorf("logits %v carry no signal: the comparison would prove nothing", out[0])
	}
}
