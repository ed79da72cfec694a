package engine

import (
	"math"
)

// Embed writes the embedding output (word + position + token type, then
// LayerNorm) for every token of in into out, [Batch·Seq][H] float32. It is the
// host-side part every backend shares. Inputs must have passed Check.
func (w *Weights) Embed(in Input, out []float32) {
	H, S := w.Config.HiddenSize, w.Spec.Seq
	eps := w.Config.LayerNormEps
	for t := range in.InputIDs {
		row := out[t*H : (t+1)*H]
		word := w.Word[int(in.InputIDs[t])*H:][:H]
		pos := w.Position[(t%S)*H:][:H]
		typ := w.Type[int(in.TokenTypeIDs[t])*H:][:H]
		for i := range row {
			row[i] = word[i] + pos[i] + typ[i]
		}
		LayerNorm(row, w.EmbGamma, w.EmbBeta, eps)
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
// the classifier. hidden is [Batch·Seq][H]; logits is [Batch][Labels].
func (w *Weights) Classify(hidden []float32, logits []float32) {
	H, S, L := w.Config.HiddenSize, w.Spec.Seq, w.Spec.Labels
	pooled := make([]float64, H)
	for b := 0; b < w.Spec.Batch; b++ {
		cls := hidden[b*S*H:][:H]
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
