package tokenizer

import (
	"errors"
	"math/rand"
	"strings"
	"testing"
)

// TestWords: text from Words tokenizes back to exactly the words it is made
// of, one token each, for every whole-word token of the vocabulary, in both
// casings of the tokenizer.
func TestWords(t *testing.T) {
	for _, lower := range []bool{true, false} {
		tok, err := New(Default().VocabBytes(), lower)
		if err != nil {
			t.Fatal(err)
		}
		tok.wordsOnce.Do(tok.findWords)
		if len(tok.words) < 10000 {
			t.Fatalf("%d whole-word tokens in the uncased vocabulary; expected most of it", len(tok.words))
		}
		// Every candidate, alone: one token, itself.
		for _, id := range tok.words {
			if got := tok.Encode(tok.tokens[id]); len(got) != 1 || got[0] != id {
				t.Fatalf("lowercase=%v: %q tokenizes to %v, want [%d]", lower, tok.tokens[id], got, id)
			}
		}
		rng := rand.New(rand.NewSource(1))
		for _, n := range []int{0, 1, 2, 7, 53, 86, 200} {
			text, err := tok.Words(n, rng)
			if err != nil {
				t.Fatal(err)
			}
			words := strings.Fields(text)
			ids := tok.Encode(text)
			if len(words) != n || len(ids) != n {
				t.Fatalf("lowercase=%v: Words(%d) gave %d words, %d tokens: %q", lower, n, len(words), len(ids), text)
			}
			for i, w := range words {
				if tok.tokens[ids[i]] != w {
					t.Fatalf("word %d %q became token %q", i, w, tok.tokens[ids[i]])
				}
			}
		}
	}
	// A vocabulary without such words says so.
	tok, err := New([]byte("[PAD]\n[UNK]\n[CLS]\n[SEP]\n##a\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Words(3, rand.New(rand.NewSource(1))); !errors.Is(err, ErrNoWords) {
		t.Errorf("Words on a vocabulary without words: %v, want ErrNoWords", err)
	}
}
