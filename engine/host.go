package engine

import (
	"math"
)

// Embed writes the embedding output (word + position + token type, then
// LayerNorm) for every row of in into out, [Tokens][H] float32; positions
// count from 0 in each sequence. It is the host-side part every backend
// shares. Inputs must have passed Check.
func (w *Weights) Embed(in Input, out []float32) {
	H := w.Config.HiddenSize
	eps := w.Config.LayerNormEps
	t := 0
	for b := 0; b < in.Seqs(w.Spec); b++ {
		for p := 0; p < in.Len(w.Spec, b); p++ {
			row := out[t*H : (t+1)*H]
			word := w.Word[int(in.InputIDs[t])*H:][:H]
			pos := w.Position[p*H:][:H]
			typ := w.Type[int(in.TokenTypeIDs[t])*H:][:H]
			for i := range row {
				row[i] = word[i] + pos[i] + typ[i]
			}
			LayerNorm(row, w.EmbGamma, w.EmbBeta, eps)
			t++
		}
	}
}

// LayerNorm normalizes x in place: (x-mean)/sqrt(var+eps)·gamma + beta, with
// the statistics accumulated in float64.
func LayerNorm(x, gamma, beta []float32, eps float64) {
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean := sum / float64(len(x))
	var sq float64
	for _, v := range x {
		d := float64(v) - mean
		sq += d * d
	}
	inv := 1 / math.Sqrt(sq/float64(len(x))+eps)
	for i, v := range x {
		x[i] = float32((float64(v)-mean)*inv)*gamma[i] + beta[i]
	}
}

// Classify runs the pooler (dense + tanh on each sequence's first token) and
// the classifier. hidden is [Tokens][H]; logits is [sequences][Labels].
func (w *Weights) Classify(in Input, hidden []float32, logits []float32) {
	H, L := w.Config.HiddenSize, w.Spec.Labels
	pooled := make([]float64, H)
	start := 0
	for b := 0; b < in.Seqs(w.Spec); b++ {
		cls := hidden[start*H:][:H]
		start += in.Len(w.Spec, b)
		for j := range pooled {
			pooled[j] = float64(w.PoolerB[j])
		}
		for k, x := range cls {
			row := w.PoolerW[k*H:][:H]
			xv := float64(x)
			for j, wv := range row {
				pooled[j] += xv * float64(wv)
			}
		}
		for j := range pooled {
			pooled[j] = math.Tanh(pooled[j])
		}
		for l := 0; l < L; l++ {
			acc := float64(w.ClassifierB[l])
			for k, p := range pooled {
				acc += p * float64(w.ClassifierW[k*L+l])
			}
			logits[b*L+l] = float32(acc)
		}
	}
}
