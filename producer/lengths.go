package producer

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand"
	"os"

	"github.com/bertq/bertq/tokenizer"
)

// Lengths are the WordPiece token counts of one sentence pair, without the
// special tokens: what the cost of real traffic depends on.
type Lengths struct{ A, B int }

// maxLengthsFile bounds a lengths file; the MRPC dev split's is 6 KB.
const maxLengthsFile = 64 << 20

// LoadLengths reads a lengths file: JSON with two equally long arrays,
// "a_tokens" and "b_tokens" (as testdata/mrpc-dev-lengths.json), other keys
// ignored.
func LoadLengths(path string) ([]Lengths, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrData, err)
	}
	defer f.Close()
	return ParseLengths(f, path)
}

// ParseLengths parses a lengths file; name labels errors.
func ParseLengths(r io.Reader, name string) ([]Lengths, error) {
	var doc struct {
		A *[]int `json:"a_tokens"`
		B *[]int `json:"b_tokens"`
	}
	if err := json.NewDecoder(io.LimitReader(r, maxLengthsFile)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: %s: not a lengths file (JSON with a_tokens and b_tokens): %v", ErrData, name, err)
	}
	switch {
	case doc.A == nil || doc.B == nil:
		return nil, fmt.Errorf("%w: %s: a lengths file needs both \"a_tokens\" and \"b_tokens\"", ErrData, name)
	case len(*doc.A) != len(*doc.B):
		return nil, fmt.Errorf("%w: %s: %d a_tokens but %d b_tokens", ErrData, name, len(*doc.A), len(*doc.B))
	case len(*doc.A) == 0:
		return nil, fmt.Errorf("%w: %s: no pairs", ErrData, name)
	}
	out := make([]Lengths, len(*doc.A))
	for i := range out {
		a, b := (*doc.A)[i], (*doc.B)[i]
		if a < 0 || b < 0 || a > tokenizer.MaxSeqLen || b > tokenizer.MaxSeqLen {
			return nil, fmt.Errorf("%w: %s: pair %d has lengths %d and %d (want 0 to %d)", ErrData, name, i, a, b, tokenizer.MaxSeqLen)
		}
		out[i] = Lengths{A: a, B: b}
	}
	return out, nil
}

// Encode makes an input of these lengths, truncated and padded to seqLen as
// text would be, with random word ids (no special tokens) from rng.
func (l Lengths) Encode(t *tokenizer.Tokenizer, seqLen int, rng *rand.Rand) (tokenizer.Encoding, error) {
	words := func(n int) []int32 {
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = t.RandomWord(rng)
		}
		return ids
	}
	return t.EncodeIDs(words(l.A), words(l.B), l.B > 0, seqLen)
}
