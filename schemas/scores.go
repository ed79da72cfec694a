package schemas

import "math"

// The scores of an InferReply are part of the contract, so they are computed
// here, beside the reply, by every front end that answers (the worker, bertq
// predict): Probabilities is the softmax of Logits, computed in float64, and
// LabelIndex is the index of the largest logit.

// Softmax returns the probabilities of one row of logits, computed in float64.
func Softmax(logits []float32) []float32 {
	maxv := math.Inf(-1)
	for _, v := range logits {
		maxv = math.Max(maxv, float64(v))
	}
	var sum float64
	e := make([]float64, len(logits))
	for i, v := range logits {
		e[i] = math.Exp(float64(v) - maxv)
		sum += e[i]
	}
	out := make([]float32, len(logits))
	for i := range e {
		out[i] = float32(e[i] / sum)
	}
	return out
}

// Argmax is the index of the largest value (the first on ties).
func Argmax(v []float32) int {
	best := 0
	for i := range v {
		if v[i] > v[best] {
			best = i
		}
	}
	return best
}
