package tokenizer

import (
	"errors"
	"math/rand"
	"strings"
)

// ErrNoWords: the vocabulary has no whole-word token for Words to use.
var ErrNoWords = errors.New("tokenizer: the vocabulary has no whole-word token of lowercase letters")

// Words returns text of exactly n WordPiece tokens: n vocabulary words drawn
// by rng, separated by spaces. Each is a whole-word token of lowercase ASCII
// letters (not a "##" continuation, not a bracketed special token), which the
// tokenizer keeps as that one token: normalizing changes nothing in it, no
// punctuation splits it, and greedy longest-match finds the whole word first.
// Load generators use it to send text of given lengths.
func (t *Tokenizer) Words(n int, rng *rand.Rand) (string, error) {
	if n <= 0 {
		return "", nil
	}
	t.wordsOnce.Do(t.findWords)
	if len(t.words) == 0 {
		return "", ErrNoWords
	}
	var b strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(t.tokens[t.words[rng.Intn(len(t.words))]])
	}
	return b.String(), nil
}

func (t *Tokenizer) findWords() {
	for id, tok := range t.tokens {
		if wholeWord(tok) {
			t.words = append(t.words, int32(id))
		}
	}
}

// wholeWord reports a token of 1 to MaxWordChars lowercase ASCII letters.
func wholeWord(tok string) bool {
	if tok == "" || len(tok) > MaxWordChars {
		return false
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] < 'a' || tok[i] > 'z' {
			return false
		}
	}
	return true
}
