package engine

import (
	"fmt"
	"math"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/tokenizer"
)

// Tokenizer builds the tokenizer an artifact was compiled with, from the
// vocabulary it carries, so that every front end encodes text alike.
func Tokenizer(f *artifact.File) (*tokenizer.Tokenizer, error) {
	vocab, err := f.Bytes(artifact.Vocab)
	if err != nil {
		return nil, err
	}
	t, err := tokenizer.New(vocab, f.Header.Lowercase)
	if err != nil {
		return nil, fmt.Errorf("%s: vocabulary: %w", f.Path, err)
	}
	return t, nil
}

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
