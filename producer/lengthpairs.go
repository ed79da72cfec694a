package producer

import (
	"fmt"
	"math/rand"

	"github.com/bertq/bertq/tokenizer"
)

// LengthPairs makes one text pair per entry of ls, in order, whose sentences
// are exactly l.A and l.B WordPiece tokens long under t (tokenizer.Words):
// traffic with the lengths of real data, such as the MRPC dev split's. An
// entry with B = 0 is a single sentence. Generated text carries no label:
// every pair has label 0, so accuracy against it means nothing.
func LengthPairs(t *tokenizer.Tokenizer, ls []Lengths, seed int64) ([]Pair, error) {
	rng := rand.New(rand.NewSource(seed))
	out := make([]Pair, len(ls))
	for i, l := range ls {
		a, err := t.Words(l.A, rng)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrData, err)
		}
		b, err := t.Words(l.B, rng)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrData, err)
		}
		out[i] = Pair{A: a, B: b, Line: i + 1}
	}
	return out, nil
}
