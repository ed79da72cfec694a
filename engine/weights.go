package engine

import (
	"fmt"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
)

// Matrix is a compiled [K][N] weight, stored in exactly one of F32, BF16 or
// I8; an I8 weight has its column scales in Scale (w ≈ I8[k][n]·Scale[n]).
type Matrix struct {
	K, N  int
	F32   []float32
	BF16  []uint16
	I8    []int8
	Scale []float32
}

// Widen returns the weight as float32: a view for F32, else a copy.
func (m *Matrix) Widen() []float32 {
	switch {
	case m.F32 != nil:
		return m.F32
	case m.I8 != nil:
		return artifact.DequantizeS8(m.I8, m.Scale, m.K, m.N)
	}
	out := make([]float32, len(m.BF16))
	for i, v := range m.BF16 {
		out[i] = artifact.FromBF16(v)
	}
	return out
}

// LayerWeights are one encoder layer's compiled tensors.
type LayerWeights struct {
	QKV, AttnOut, FFNIn, FFNOut     Matrix
	QKVBias, AttnOutBias, FFNInBias []float32
	FFNOutBias                      []float32
	AttnNormGamma, AttnNormBeta     []float32
	FFNNormGamma, FFNNormBeta       []float32
}

// Weights are views of every compiled tensor of an artifact, shape-checked,
// so that backends share one reading of the layout.
type Weights struct {
	Config                   bert.Config
	Spec                     Spec
	Activation               bert.Activation
	Word, Position, Type     []float32
	EmbGamma, EmbBeta        []float32
	Layers                   []LayerWeights
	PoolerW, PoolerB         []float32 // [H][H], [H]
	ClassifierW, ClassifierB []float32 // [H][L], [L]
}

// ReadWeights collects and shape-checks an artifact's tensors.
func ReadWeights(f *artifact.File) (*Weights, error) {
	h := f.Header
	c := h.Model
	H, I, L := c.HiddenSize, c.IntermediateSize, c.NumLabels
	w := &Weights{
		Config:     c,
		Spec:       Spec{Batch: h.Batch, Seq: h.Seq, Labels: L, Precision: h.Precision},
		Activation: h.Activation,
		Layers:     make([]LayerWeights, c.NumLayers),
	}
	var err error
	f32 := func(dst *[]float32, name string, shape ...int) {
		if err == nil {
			*dst, err = f.F32(name, shape...)
		}
	}
	mat := func(dst *Matrix, name string, k, n int) {
		if err != nil {
			return
		}
		dst.K, dst.N = k, n
		var info *artifact.TensorInfo
		if info, err = f.Info(name); err != nil {
			return
		}
		switch info.DType {
		case artifact.DTypeBF16:
			dst.BF16, err = f.BF16(name, k, n)
		case artifact.DTypeI8:
			if dst.I8, err = f.I8(name, k, n); err == nil {
				dst.Scale, err = f.F32(artifact.ScaleTensor(name), n)
			}
		default:
			dst.F32, err = f.F32(name, k, n)
		}
	}
	f32(&w.Word, artifact.WordEmbeddings, c.VocabSize, H)
	f32(&w.Position, artifact.PositionEmbeddings, c.MaxPositions, H)
	f32(&w.Type, artifact.TokenTypeEmbeddings, c.TypeVocabSize, H)
	f32(&w.EmbGamma, artifact.EmbNormGamma, H)
	f32(&w.EmbBeta, artifact.EmbNormBeta, H)
	for l := range w.Layers {
		lw := &w.Layers[l]
		n := func(part string) string { return artifact.LayerTensor(l, part) }
		mat(&lw.QKV, n(artifact.QKVWeight), H, 3*H)
		f32(&lw.QKVBias, n(artifact.QKVBias), 3*H)
		mat(&lw.AttnOut, n(artifact.AttnOutWeight), H, H)
		f32(&lw.AttnOutBias, n(artifact.AttnOutBias), H)
		f32(&lw.AttnNormGamma, n(artifact.AttnNormGamma), H)
		f32(&lw.AttnNormBeta, n(artifact.AttnNormBeta), H)
		mat(&lw.FFNIn, n(artifact.FFNInWeight), H, I)
		f32(&lw.FFNInBias, n(artifact.FFNInBias), I)
		mat(&lw.FFNOut, n(artifact.FFNOutWeight), I, H)
		f32(&lw.FFNOutBias, n(artifact.FFNOutBias), H)
		f32(&lw.FFNNormGamma, n(artifact.FFNNormGamma), H)
		f32(&lw.FFNNormBeta, n(artifact.FFNNormBeta), H)
	}
	f32(&w.PoolerW, artifact.PoolerWeight, H, H)
	f32(&w.PoolerB, artifact.PoolerBias, H)
	f32(&w.ClassifierW, artifact.ClassifierWeight, H, L)
	f32(&w.ClassifierB, artifact.ClassifierBias, L)
	if err != nil {
		return nil, fmt.Errorf("reading compiled weights: %w", err)
	}
	return w, nil
}
