package producer

import (
	"errors"
	"math/rand"
	"strings"
	"testing"

	"github.com/bertq/bertq/tokenizer"
)

func TestParseLengths(t *testing.T) {
	got, err := ParseLengths(strings.NewReader(`{"source":"x","a_tokens":[3,0,40],"b_tokens":[5,2,60],"pair_tokens":[11,5,103]}`), "l.json")
	if err != nil {
		t.Fatal(err)
	}
	want := []Lengths{{3, 5}, {0, 2}, {40, 60}}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("pair %d: %v, want %v", i, got[i], want[i])
		}
	}
	for name, doc := range map[string]string{
		"not json":   `a_tokens`,
		"missing b":  `{"a_tokens":[1]}`,
		"unequal":    `{"a_tokens":[1,2],"b_tokens":[1]}`,
		"empty":      `{"a_tokens":[],"b_tokens":[]}`,
		"negative":   `{"a_tokens":[-1],"b_tokens":[1]}`,
		"huge":       `{"a_tokens":[1],"b_tokens":[99999999]}`,
		"not ints":   `{"a_tokens":["3"],"b_tokens":[1]}`,
		"not arrays": `{"a_tokens":3,"b_tokens":1}`,
	} {
		if _, err := ParseLengths(strings.NewReader(doc), "l.json"); !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "l.json") {
			t.Errorf("%s: %v, want ErrData naming the file", name, err)
		}
	}
}

// An encoding of given lengths has exactly those tokens between its
// specials, truncated longest-first when they do not fit.
func TestLengthsEncode(t *testing.T) {
	tok := tokenizer.Default()
	rng := rand.New(rand.NewSource(1))
	cls, _ := tok.TokenID("[CLS]")
	sep, _ := tok.TokenID("[SEP]")
	for _, c := range []struct {
		l         Lengths
		seq, a, b int
	}{{Lengths{3, 5}, 16, 3, 5}, {Lengths{7, 0}, 16, 7, 0}, {Lengths{20, 4}, 16, 9, 4}, {Lengths{20, 20}, 16, 6, 7}} {
		enc, err := c.l.Encode(tok, c.seq, rng)
		if err != nil {
			t.Fatal(err)
		}
		real := 0
		for _, m := range enc.AttentionMask {
			real += int(m)
		}
		specials := 3
		if c.b == 0 {
			specials = 2
		}
		if real != c.a+c.b+specials || enc.InputIDs[0] != cls || enc.InputIDs[c.a+1] != sep || enc.InputIDs[real-1] != sep {
			t.Errorf("%v at %d: %d real tokens %v, want [CLS] %d [SEP] %d [SEP]", c.l, c.seq, real, enc.InputIDs[:real], c.a, c.b)
		}
		for i := 1; i < real-1; i++ {
			if i != c.a+1 && tok.Token(enc.InputIDs[i])[0] == '[' {
				t.Errorf("%v: special token %q at %d", c.l, tok.Token(enc.InputIDs[i]), i)
			}
		}
	}
}

func FuzzParseLengths(f *testing.F) {
	f.Add(`{"a_tokens":[3,0],"b_tokens":[5,2]}`)
	f.Add(`{"a_tokens":[1],"b_tokens":[]}`)
	f.Fuzz(func(t *testing.T, doc string) {
		ls, err := ParseLengths(strings.NewReader(doc), "fuzz")
		if err != nil {
			if !errors.Is(err, ErrData) {
				t.Fatalf("error %v is not ErrData", err)
			}
			return
		}
		if len(ls) == 0 {
			t.Fatal("no error and no pairs")
		}
		for _, l := range ls {
			if l.A < 0 || l.B < 0 || l.A > tokenizer.MaxSeqLen || l.B > tokenizer.MaxSeqLen {
				t.Fatalf("accepted lengths %v", l)
			}
		}
	})
}
