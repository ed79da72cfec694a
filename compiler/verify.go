package compiler

import (
	"fmt"
	"math"
	"sync"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
)

// verificationPairs are short MRPC-style pairs: short, so that the float64
// reference forward over the unfused weights stays quick even for BERT-Large.
var verificationPairs = [][2]string{
	{"The company said its quarterly profit rose 12 percent.", "Quarterly profit climbed 12 percent, the company said."},
	{"He left for Paris on Monday.", "The weather was cold in the mountains."},
	{"Shares fell 3.5% in early trading.", "The stock dropped 3.5 percent early on."},
	{"Ångström über naïve café — 東京!", "It's a test, isn't it?"},
}

// Verify runs the artifact at path on the built-in pairs with the named engine
// backend and compares its logits with the float64 reference evaluation of
// src's own (unfused, full precision) weights.
func Verify(path string, src Source, backend string) (*artifact.Verification, error) {
	f, err := artifact.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := engine.Get(backend)
	if err != nil {
		return nil, err
	}
	m, err := b.Load(f, engine.Options{})
	if err != nil {
		return nil, err
	}
	defer m.Close()
	r, err := m.NewRunner(-1)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	s := m.Spec()
	n := len(verificationPairs)
	type enc struct{ ids, types []int32 }
	encs := make([]enc, n)
	for i := 0; i < n; i++ {
		p := verificationPairs[i]
		e, err := src.Tokenizer.EncodePair(p[0], p[1], s.Seq)
		if err != nil {
			return nil, err
		}
		real := 0
		for _, v := range e.AttentionMask {
			real += int(v)
		}
		encs[i] = enc{e.InputIDs[:real], e.TokenTypeIDs[:real]}
	}
	// The reference runs concurrently with the engine; it is the slower half.
	refs := make([][]float64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range encs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refs[i], errs[i] = src.Weights.Forward(encs[i].ids, encs[i].types)
		}()
	}
	var maxDiff float64
	logits := make([]float32, s.Batch*s.Labels)
	for start := 0; start < n; start += s.Batch {
		in := engine.Input{
			InputIDs:      make([]int32, s.Batch*s.Seq),
			TokenTypeIDs:  make([]int32, s.Batch*s.Seq),
			AttentionMask: make([]int32, s.Batch*s.Seq),
		}
		for slot := 0; slot < s.Batch; slot++ {
			e := encs[(start+slot)%n]
			copy(in.InputIDs[slot*s.Seq:], e.ids)
			copy(in.TokenTypeIDs[slot*s.Seq:], e.types)
			for t := range e.ids {
				in.AttentionMask[slot*s.Seq+t] = 1
			}
		}
		if err := r.Run(in, logits); err != nil {
			wg.Wait()
			return nil, err
		}
		wg.Wait()
		for slot := 0; slot < s.Batch && start+slot < n; slot++ {
			if errs[start+slot] != nil {
				return nil, errs[start+slot]
			}
			for l := 0; l < s.Labels; l++ {
				d := math.Abs(float64(logits[slot*s.Labels+l]) - refs[start+slot][l])
				if math.IsNaN(d) {
					return nil, fmt.Errorf("artifact produced NaN logits")
				}
				maxDiff = math.Max(maxDiff, d)
			}
		}
	}
	return &artifact.Verification{Pairs: n, Reference: "float64 evaluation of the source weights", Backend: b.Name(), MaxAbsLogitDiff: maxDiff}, nil
}
