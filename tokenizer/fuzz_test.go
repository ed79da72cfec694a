package tokenizer

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// referenceTokenize is a slow, literal transcription of Hugging Face's
// pipeline (AddedVocabulary split, BertNormalizer, BertPreTokenizer,
// WordPiece) over whole strings, written independently of the fast path,
// for differential fuzzing.
func referenceTokenize(t *Tokenizer, text string) []string {
	var out []string
	var specials []string
	for _, s := range t.specials {
		specials = append(specials, s.text)
	}
	for len(text) > 0 {
		best, at := "", -1
		for _, s := range specials {
			if i := strings.Index(text, s); i >= 0 && (at < 0 || i < at) {
				best, at = s, i
			}
		}
		if at < 0 {
			break
		}
		out = append(out, referenceSegment(t, text[:at])...)
		out = append(out, best)
		text = text[at+len(best):]
	}
	return append(out, referenceSegment(t, text)...)
}

func referenceSegment(t *Tokenizer, text string) []string {
	assigned := func(r rune) bool {
		return unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z, unicode.C)
	}
	other := func(r rune) bool { return unicode.In(r, unicode.C) || !assigned(r) }
	// clean_text
	var sb strings.Builder
	for _, r := range text {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			sb.WriteRune(' ')
		case r == 0 || r == 0xFFFD || other(r):
		case unicode.IsSpace(r):
			sb.WriteRune(' ')
		default:
			sb.WriteRune(r)
		}
	}
	// handle_chinese_chars
	s := sb.String()
	sb.Reset()
	for _, r := range s {
		if isCJK(r) {
			sb.WriteString(" " + string(r) + " ")
		} else {
			sb.WriteRune(r)
		}
	}
	s = sb.String()
	// strip_accents
	if t.lowercase {
		s = strings.Map(func(r rune) rune {
			if unicode.Is(unicode.Mn, r) {
				return -1
			}
			return r
		}, norm.NFD.String(s))
	}
	// lowercase (Rust's full mapping: İ -> i + U+0307)
	if t.lowercase {
		s = strings.Map(unicode.ToLower, strings.ReplaceAll(s, "İ", "i\u0307"))
	}
	// pre-tokenize
	var words []string
	for _, w := range strings.FieldsFunc(s, unicode.IsSpace) {
		start := 0
		for i, r := range w {
			if r < 0x80 && isASCIIPunct(byte(r)) || unicode.IsPunct(r) {
				if i > start {
					words = append(words, w[start:i])
				}
				words = append(words, string(r))
				start = i + len(string(r))
			}
		}
		if start < len(w) {
			words = append(words, w[start:])
		}
	}
	// WordPiece
	var out []string
	for _, w := range words {
		chars := []rune(w)
		if len(chars) > MaxWordChars {
			out = append(out, UnkToken)
			continue
		}
		var pieces []string
		bad := false
		for start := 0; start < len(chars); {
			end := len(chars)
			cur := ""
			for ; start < end; end-- {
				sub := string(chars[start:end])
				if start > 0 {
					sub = "##" + sub
				}
				if _, ok := t.vocab[sub]; ok {
					cur = sub
					break
				}
			}
			if cur == "" {
				bad = true
				break
			}
			pieces = append(pieces, cur)
			start = end
		}
		if bad {
			out = append(out, UnkToken)
		} else {
			out = append(out, pieces...)
		}
	}
	return out
}

var fuzzSeeds = []string{
	"", "Hello, World!", "naïve café résumé", "Ångström über straße", "東京タワーは高い",
	"한국어 문장", "[CLS] [SEP] [MASK] [UNK]", "a[CLS]b[cls]", "[[SEP]", "\x00\x01control\x7f",
	"a\u0301 combining", "🙂🙃👍🏽", "Ｆｕｌｌ ﬁﬂ", "İstanbul ΟΔΟΣ", "\uf900\U0002B820\U0002B920",
	"a\u1fefb\u2028c", "\xff\xfe\xc3", strings.Repeat("x", 101), "unaffable antidisestablishmentarianism",
	"e-mail: a.b@c.d 1,000,000.00 $5 €6", "tab\there\r\nnew\nline", "\u00a0\u2009\u3000",
}

func FuzzTokenizeReference(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s, true)
	}
	def := Default()
	cased, err := New(defaultVocab, false)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string, lower bool) {
		tok := def
		if !lower {
			tok = cased
		}
		got := tok.Tokenize(text)
		want := referenceTokenize(tok, text)
		if want == nil {
			want = []string{}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Tokenize(%q) lowercase=%v\n got %q\nwant %q", text, lower, got, want)
		}
	})
}

// referenceIDs is referenceTokenize's tokens as ids.
func referenceIDs(t *Tokenizer, text string) []int32 {
	toks := referenceTokenize(t, text)
	ids := make([]int32, len(toks))
	for i, tok := range toks {
		ids[i] = t.vocab[tok]
	}
	return ids
}

// referenceTruncate is longest_first truncation as the Rust tokenizers
// library behaves, found by search rather than by its formula (LongestFirst):
// of all the lengths k1 <= n1, k2 <= n2 that keep min(n1+n2, m) tokens, the
// pair whose longer part is shortest (the longest is cut first); of two such,
// the one giving the odd token to the sequence that was longer, b when they
// were equally long.
func referenceTruncate(n1, n2, m int) (int, int) {
	keep := min(n1+n2, max(m, 0))
	b1, b2 := -1, -1
	for k1 := 0; k1 <= n1 && k1 <= keep; k1++ {
		k2 := keep - k1
		switch {
		case k2 > n2:
		case b1 < 0, max(k1, k2) < max(b1, b2):
			b1, b2 = k1, k2
		case max(k1, k2) == max(b1, b2) && (n1 > n2) == (k1 > k2):
			b1, b2 = k1, k2
		}
	}
	return b1, b2
}

// FuzzEncodePair checks EncodePair against an encoding built from the
// reference tokenizer and the reference truncation: [CLS] a [SEP] (b [SEP])
// then [PAD]s; types 0 through the first [SEP], then 1; mask 1 on real tokens.
func FuzzEncodePair(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(s, fuzzSeeds[(i+3)%len(fuzzSeeds)], 16)
		f.Add(s, "", 8)
	}
	f.Add("a", "b", 3)
	f.Add("a", "", 2)
	f.Add("a", "b", 2)
	f.Add("a", "b", -1)
	// Truncation's edge cases: equal lengths and an odd budget (b keeps the
	// odd token), a longer or b longer (the longer one keeps it), only the
	// longer one cut, nothing cut.
	eight, four := "a b c d e f g h", "i j k l"
	f.Add(eight, eight, 10)
	f.Add(eight, four, 10)
	f.Add(four, eight, 10)
	f.Add(eight, four, 11)
	f.Add(four, eight, 12)
	f.Add(four, "x y", 9)
	f.Add(eight, eight, 3)
	tok := Default()
	f.Fuzz(func(t *testing.T, a, b string, seqLen int) {
		seqLen %= 600 // keep allocations sane; negative lengths stay negative
		enc, err := tok.EncodePair(a, b, seqLen)
		pair := b != "" // an empty b means a single sequence (see EncodePair)
		special := 2
		if pair {
			special = 3
		}
		if seqLen < special {
			if !errors.Is(err, ErrSeqTooShort) {
				t.Fatalf("seqLen %d: error %v, want ErrSeqTooShort", seqLen, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("EncodePair(%q, %q, %d): %v", a, b, seqLen, err)
		}
		ta, tb := referenceIDs(tok, a), referenceIDs(tok, b)
		n1, n2 := min(len(ta), seqLen-special), 0
		if pair {
			n1, n2 = referenceTruncate(len(ta), len(tb), seqLen-special)
		}
		ids := append(append(append([]int32{tok.cls}, ta[:n1]...), tok.sep), tb[:n2]...)
		if pair {
			ids = append(ids, tok.sep)
		}
		real := len(ids)
		want := Encoding{InputIDs: ids, TokenTypeIDs: make([]int32, seqLen), AttentionMask: make([]int32, seqLen)}
		for len(want.InputIDs) < seqLen {
			want.InputIDs = append(want.InputIDs, tok.pad)
		}
		for i := range real {
			want.AttentionMask[i] = 1
			if pair && i >= n1+2 {
				want.TokenTypeIDs[i] = 1
			}
		}
		if !slices.Equal(enc.InputIDs, want.InputIDs) || !slices.Equal(enc.TokenTypeIDs, want.TokenTypeIDs) ||
			!slices.Equal(enc.AttentionMask, want.AttentionMask) {
			t.Fatalf("EncodePair(%q, %q, %d): a has %d tokens, b %d; reference keeps %d and %d\n"+
				" got ids %v types %v mask %v\nwant ids %v types %v mask %v",
				a, b, seqLen, len(ta), len(tb), n1, n2, enc.InputIDs[:real], enc.TokenTypeIDs[:real], enc.AttentionMask[:real],
				want.InputIDs[:real], want.TokenTypeIDs[:real], want.AttentionMask[:real])
		}
	})
}

// The reference truncation agrees with the Rust library's own test table
// (max_length 7), and LongestFirst with it.
func TestReferenceTruncate(t *testing.T) {
	lens := []int{0, 2, 4, 8}
	want := [4][4][2]int{
		{{0, 0}, {0, 2}, {0, 4}, {0, 7}},
		{{2, 0}, {2, 2}, {2, 4}, {2, 5}},
		{{4, 0}, {4, 2}, {3, 4}, {3, 4}},
		{{7, 0}, {5, 2}, {4, 3}, {3, 4}},
	}
	for i, n1 := range lens {
		for j, n2 := range lens {
			if a, b := referenceTruncate(n1, n2, 7); [2]int{a, b} != want[i][j] {
				t.Errorf("referenceTruncate(%d, %d, 7) = %d, %d, want %v", n1, n2, a, b, want[i][j])
			}
		}
	}
	// LongestFirst's formula and the search agree on every small case.
	for n1 := range 40 {
		for n2 := range 40 {
			for m := range 40 {
				a, b := LongestFirst(n1, n2, m)
				if ra, rb := referenceTruncate(n1, n2, m); a != ra || b != rb {
					t.Fatalf("LongestFirst(%d, %d, %d) = %d, %d; the reference keeps %d, %d", n1, n2, m, a, b, ra, rb)
				}
			}
		}
	}
}

func FuzzLoadVocab(f *testing.F) {
	f.Add([]byte(testVocab), "Hello, café [CLS]")
	f.Add([]byte("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]"), "x")
	f.Add([]byte("[PAD]\n[UNK]\n[CLS]\n[SEP]\n##\n#\n##a\na\n"), "a## #a aa")
	f.Add([]byte("[PAD]\n[PAD]\n"), "")
	f.Add([]byte{}, "")
	f.Add([]byte("\n\n"), "")
	f.Add([]byte("[PAD]\n[UNK]\n[CLS]\n[SEP]\n\xff\n"), "")
	f.Fuzz(func(t *testing.T, vocab []byte, text string) {
		tok, err := New(vocab, true)
		if err != nil {
			if !errors.Is(err, ErrBadVocab) {
				t.Fatalf("error %v is not ErrBadVocab", err)
			}
			return
		}
		lines := strings.Split(strings.TrimSuffix(string(vocab), "\n"), "\n")
		if tok.VocabSize() != len(lines) {
			t.Fatalf("VocabSize %d, %d lines", tok.VocabSize(), len(lines))
		}
		for i, l := range lines {
			l = strings.TrimSuffix(l, "\r")
			if id, ok := tok.TokenID(l); !ok || id != int32(i) || tok.Token(int32(i)) != l {
				t.Fatalf("line %d %q: id %d %v", i+1, l, id, ok)
			}
		}
		got := tok.Tokenize(text)
		if want := referenceTokenize(tok, text); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			t.Fatalf("Tokenize(%q)\n got %q\nwant %q", text, got, want)
		}
		enc, err := tok.EncodePair(text, text, 8)
		if err != nil || len(enc.InputIDs) != 8 {
			t.Fatalf("EncodePair: %v %v", enc, err)
		}
	})
}
