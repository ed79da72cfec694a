// Package enginetest holds what the engine backends' tests share: toy
// artifacts with random weights, random static and packed batches, a float64
// reference forward that can emulate a backend's rounding (bf16) and
// quantization (int8), and a conformance suite every backend runs.
package enginetest

import (
	"math"
	"math/rand"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

// SmallConfig is a toy BERT that still has every part of the real one.
func SmallConfig(act bert.Activation) bert.Config {
	return bert.Config{
		VocabSize: 100, HiddenSize: 64, NumLayers: 2, NumHeads: 4, IntermediateSize: 256,
		MaxPositions: 64, TypeVocabSize: 2, NumLabels: 3, Activation: act, LayerNormEps: 1e-12,
	}
}

// Activations lists every GELU variant the engines implement.
var Activations = []bert.Activation{bert.GELUExact, bert.GELUTanh, bert.GELUCrude}

// WriteArtifact writes a compiled-layout artifact with random weights scaled
// so that activations stay O(1) (and attention is far from uniform), Q
// columns pre-scaled by 1/√d like the compiler's, encoder weights stored in
// prec.
func WriteArtifact(tb testing.TB, path string, c bert.Config, batch, seq int, prec artifact.Precision, seed int64) {
	tb.Helper()
	rng := rand.New(rand.NewSource(seed))
	uni := func(n int, a float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32((2*rng.Float64() - 1) * a)
		}
		return out
	}
	around := func(n int, center, a float64) []float32 {
		out := uni(n, a)
		for i := range out {
			out[i] += float32(center)
		}
		return out
	}
	wr, err := artifact.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	H, I, D := c.HiddenSize, c.IntermediateSize, c.HeadDim()
	wr.F32(artifact.WordEmbeddings, []int{c.VocabSize, H}, uni(c.VocabSize*H, 1))
	wr.F32(artifact.PositionEmbeddings, []int{c.MaxPositions, H}, uni(c.MaxPositions*H, 0.5))
	wr.F32(artifact.TokenTypeEmbeddings, []int{c.TypeVocabSize, H}, uni(c.TypeVocabSize*H, 0.5))
	wr.F32(artifact.EmbNormGamma, []int{H}, around(H, 1, 0.2))
	wr.F32(artifact.EmbNormBeta, []int{H}, uni(H, 0.2))
	for l := 0; l < c.NumLayers; l++ {
		n := func(p string) string { return artifact.LayerTensor(l, p) }
		wrMat := func(p string, k, nn int, gain float64) {
			data := uni(k*nn, gain*math.Sqrt(3/float64(k)))
			if p == artifact.QKVWeight {
				for r := 0; r < k; r++ {
					for j := 0; j < H; j++ {
						data[r*nn+j] *= float32(2 / math.Sqrt(float64(D)))
					}
				}
			}
			wr.Matrix(n(p), k, nn, data, prec)
		}
		wrMat(artifact.QKVWeight, H, 3*H, 1)
		wr.F32(n(artifact.QKVBias), []int{3 * H}, uni(3*H, 0.1))
		wrMat(artifact.AttnOutWeight, H, H, 1)
		wr.F32(n(artifact.AttnOutBias), []int{H}, uni(H, 0.1))
		wr.F32(n(artifact.AttnNormGamma), []int{H}, around(H, 1, 0.2))
		wr.F32(n(artifact.AttnNormBeta), []int{H}, uni(H, 0.2))
		wrMat(artifact.FFNInWeight, H, I, 1.5)
		wr.F32(n(artifact.FFNInBias), []int{I}, uni(I, 0.3))
		wrMat(artifact.FFNOutWeight, I, H, 1)
		wr.F32(n(artifact.FFNOutBias), []int{H}, uni(H, 0.1))
		wr.F32(n(artifact.FFNNormGamma), []int{H}, around(H, 1, 0.2))
		wr.F32(n(artifact.FFNNormBeta), []int{H}, uni(H, 0.2))
	}
	wr.F32(artifact.PoolerWeight, []int{H, H}, uni(H*H, 2*math.Sqrt(3/float64(H))))
	wr.F32(artifact.PoolerBias, []int{H}, uni(H, 0.2))
	wr.F32(artifact.ClassifierWeight, []int{H, c.NumLabels}, uni(H*c.NumLabels, math.Sqrt(3/float64(H))))
	wr.F32(artifact.ClassifierBias, []int{c.NumLabels}, uni(c.NumLabels, 0.1))
	hdr := artifact.Header{Model: c, Batch: batch, Seq: seq, Precision: prec,
		Activation: c.Activation, Synthetic: true, Compiler: "engine/enginetest"}
	if prec == artifact.INT8 {
		hdr.Quantization = &artifact.Quantization{Weights: artifact.WeightsS8PairSafe, Activations: artifact.ActivationsU8PerToken}
	}
	if err := wr.Close(hdr); err != nil {
		tb.Fatal(err)
	}
}

// Seq is one sequence's tokens.
type Seq struct{ IDs, Types []int32 }

// RandomSeq makes a sequence of n tokens, two segments.
func RandomSeq(rng *rand.Rand, c bert.Config, n int) Seq {
	s := Seq{IDs: make([]int32, n), Types: make([]int32, n)}
	for i := range s.IDs {
		s.IDs[i] = int32(rng.Intn(c.VocabSize))
		if i >= n/2 {
			s.Types[i] = 1
		}
	}
	return s
}

// Pack makes a packed batch of seqs.
func Pack(seqs ...Seq) engine.Input {
	var in engine.Input
	for _, s := range seqs {
		in.InputIDs = append(in.InputIDs, s.IDs...)
		in.TokenTypeIDs = append(in.TokenTypeIDs, s.Types...)
		in.Lengths = append(in.Lengths, int32(len(s.IDs)))
	}
	return in
}

// RandomStatic makes a static batch with sequences of varied length (padding
// at the end), two segments each, and, if holes, some padding inside
// sequences too.
func RandomStatic(rng *rand.Rand, c bert.Config, batch, seq int, holes bool) engine.Input {
	n := batch * seq
	in := engine.Input{InputIDs: make([]int32, n), TokenTypeIDs: make([]int32, n), AttentionMask: make([]int32, n)}
	for b := 0; b < batch; b++ {
		length := seq
		if b > 0 {
			length = 1 + rng.Intn(seq)
		}
		for s := 0; s < seq; s++ {
			i := b*seq + s
			if s >= length {
				in.InputIDs[i] = int32(c.PadTokenID)
				continue
			}
			in.InputIDs[i] = int32(rng.Intn(c.VocabSize))
			if s >= length/2 {
				in.TokenTypeIDs[i] = 1
			}
			in.AttentionMask[i] = 1
			if holes && s > 0 && rng.Intn(5) == 0 {
				in.AttentionMask[i] = 0
			}
		}
	}
	return in
}

// MaxDiff is the largest |got - want|.
func MaxDiff(got []float32, want []float64) float64 {
	var d float64
	for i := range want {
		d = math.Max(d, math.Abs(float64(got[i])-want[i]))
	}
	return d
}

// BitsEqual reports whether a and b hold the same float32 bits.
func BitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
