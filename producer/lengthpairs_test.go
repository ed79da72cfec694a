package producer

import (
	"testing"

	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/tokenizer"
)

// TestLengthPairs: the MRPC dev lengths become pairs that tokenize to exactly
// those lengths, pair by pair, and the same seed makes the same text.
func TestLengthPairs(t *testing.T) {
	ls, err := LoadLengths(fixtures.Path(t, "mrpc-dev-lengths.json"))
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenizer.Default()
	pairs, err := LengthPairs(tok, ls, 7)
	if err != nil {
		t.Fatal(err)
	}
	if len(pairs) != len(ls) {
		t.Fatalf("%d pairs for %d lengths", len(pairs), len(ls))
	}
	for i, p := range pairs {
		if a, b := len(tok.Encode(p.A)), len(tok.Encode(p.B)); a != ls[i].A || b != ls[i].B {
			t.Fatalf("pair %d: %d and %d tokens, want %d and %d", i, a, b, ls[i].A, ls[i].B)
		}
	}
	again, err := LengthPairs(tok, ls, 7)
	if err != nil {
		t.Fatal(err)
	}
	if again[10] != pairs[10] {
		t.Error("the same seed made different text")
	}
}
