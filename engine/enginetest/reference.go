package enginetest

import (
	"math"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
)

// Emulate says where a reference forward rounds the way an engine does.
type Emulate struct {
	// BF16 rounds every matmul input to bfloat16.
	BF16 bool
	// Int8 quantizes every encoder matmul input per row to u8 over the
	// row's range, as engines do for int8 artifacts (whose stored weights
	// are already quantized): artifact.ActivationsU8PerToken.
	Int8 bool
}

// Reference is a float64 forward of in over the compiled weights: each
// sequence on its own rows, positions from 0, masked keys (if any) ignored,
// as Hugging Face computes a padded batch. It returns [sequences][Labels].
func Reference(w *engine.Weights, in engine.Input, em Emulate) []float64 {
	s := w.Spec
	out := make([]float64, 0, in.Seqs(s)*s.Labels)
	start := 0
	for b := 0; b < in.Seqs(s); b++ {
		n := in.Len(s, b)
		var mask []int32
		if in.AttentionMask != nil {
			mask = in.AttentionMask[start : start+n]
		}
		out = append(out, reference1(w, in.InputIDs[start:start+n], in.TokenTypeIDs[start:start+n], mask, em)...)
		start += n
	}
	return out
}

// round applies em's rounding to a matmul input of rows of width k.
func (em Emulate) round(x []float64, k int) []float64 {
	out := append([]float64(nil), x...)
	switch {
	case em.BF16:
		for i, v := range out {
			out[i] = float64(artifact.FromBF16(artifact.ToBF16(float32(v))))
		}
	case em.Int8:
		for r := 0; r < len(out)/k; r++ {
			row := out[r*k : (r+1)*k]
			var lo, hi float32
			for _, v := range row {
				lo, hi = min(lo, float32(v)), max(hi, float32(v))
			}
			if hi == lo {
				continue
			}
			inv, scale := 255/(hi-lo), (hi-lo)/255
			z := min(max(math.RoundToEven(float64(-lo*inv)), 0), 255)
			for i, v := range row {
				q := min(max(math.RoundToEven(float64(float32(v)*inv))+z, 0), 255)
				row[i] = (q - z) * float64(scale)
			}
		}
	}
	return out
}

func reference1(w *engine.Weights, ids, types, mask []int32, em Emulate) []float64 {
	c := w.Config
	T, H, NH, I := len(ids), c.HiddenSize, c.NumHeads, c.IntermediateSize
	D := H / NH
	x := make([]float64, T*H)
	for t := 0; t < T; t++ {
		row := x[t*H : (t+1)*H]
		for i := range row {
			row[i] = float64(w.Word[int(ids[t])*H+i]) + float64(w.Position[t*H+i]) + float64(w.Type[int(types[t])*H+i])
		}
		layerNorm(row, w.EmbGamma, w.EmbBeta, c.LayerNormEps)
	}
	for l := range w.Layers {
		lw := &w.Layers[l]
		qkv := matmul(em.round(x, H), T, H, widen(&lw.QKV), 3*H, lw.QKVBias)
		ctx := make([]float64, T*H)
		p := make([]float64, T)
		for h := 0; h < NH; h++ {
			for i := 0; i < T; i++ {
				q := qkv[i*3*H+h*D:][:D]
				mx := math.Inf(-1)
				for j := 0; j < T; j++ {
					p[j] = math.Inf(-1)
					if mask != nil && mask[j] == 0 {
						continue
					}
					k := qkv[j*3*H+H+h*D:][:D]
					var dot float64
					for e := range q {
						dot += q[e] * k[e]
					}
					p[j] = dot
					mx = math.Max(mx, dot)
				}
				var sum float64
				for j := range p {
					p[j] = math.Exp(p[j] - mx)
					sum += p[j]
				}
				out := ctx[i*H+h*D:][:D]
				for j := 0; j < T; j++ {
					v := qkv[j*3*H+2*H+h*D:][:D]
					for e := range out {
						out[e] += p[j] / sum * v[e]
					}
				}
			}
		}
		ao := matmul(em.round(ctx, H), T, H, widen(&lw.AttnOut), H, lw.AttnOutBias)
		for i := range x {
			x[i] += ao[i]
		}
		for t := 0; t < T; t++ {
			layerNorm(x[t*H:(t+1)*H], lw.AttnNormGamma, lw.AttnNormBeta, c.LayerNormEps)
		}
		hid := matmul(em.round(x, H), T, H, widen(&lw.FFNIn), I, lw.FFNInBias)
		for i, v := range hid {
			hid[i] = w.Activation.Apply(v)
		}
		fo := matmul(em.round(hid, I), T, I, widen(&lw.FFNOut), H, lw.FFNOutBias)
		for i := range x {
			x[i] += fo[i]
		}
		for t := 0; t < T; t++ {
			layerNorm(x[t*H:(t+1)*H], lw.FFNNormGamma, lw.FFNNormBeta, c.LayerNormEps)
		}
	}
	L := w.Spec.Labels
	logits := make([]float64, L)
	pooled := make([]float64, H)
	for j := range pooled {
		acc := float64(w.PoolerB[j])
		for k := 0; k < H; k++ {
			acc += x[k] * float64(w.PoolerW[k*H+j])
		}
		pooled[j] = math.Tanh(acc)
	}
	for l := 0; l < L; l++ {
		acc := float64(w.ClassifierB[l])
		for k, v := range pooled {
			acc += v * float64(w.ClassifierW[k*L+l])
		}
		logits[l] = acc
	}
	return logits
}

func widen(m *engine.Matrix) []float64 {
	f := m.Widen()
	out := make([]float64, len(f))
	for i, v := range f {
		out[i] = float64(v)
	}
	return out
}

func layerNorm(row []float64, g, b []float32, eps float64) {
	var mean, sq float64
	for _, v := range row {
		mean += v
	}
	mean /= float64(len(row))
	for _, v := range row {
		sq += (v - mean) * (v - mean)
	}
	inv := 1 / math.Sqrt(sq/float64(len(row))+eps)
	for i, v := range row {
		row[i] = (v-mean)*inv*float64(g[i]) + float64(b[i])
	}
}

func matmul(a []float64, M, K int, wt []float64, N int, bias []float32) []float64 {
	out := make([]float64, M*N)
	for m := 0; m < M; m++ {
		o := out[m*N : (m+1)*N]
		for j := range o {
			o[j] = float64(bias[j])
		}
		for k := 0; k < K; k++ {
			av := a[m*K+k]
			row := wt[k*N : (k+1)*N]
			for j, wv := range row {
				o[j] += av * wv
			}
		}
	}
	return out
}
