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

func FuzzEncodePair(f *testing.F) {
	for i, s := range fuzzSeeds {
		f.Add(s, fuzzSeeds[(i+3)%len(fuzzSeeds)], 16)
		f.Add(s, "", 8)
	}
	f.Add("a", "b", 3)
	f.Add("a", "", 2)
	f.Add("a", "b", 2)
	f.Add("a", "b", -1)
	tok := Default()
	f.Fuzz(func(t *testing.T, a, b string, seqLen int) {
		seqLen %= 600 // keep allocations sane; negative lengths stay negative
		enc, err := tok.EncodePair(a, b, seqLen)
		min := 2
		if b != "" {
			min = 3
		}
		if seqLen < min {
			if !errors.Is(err, ErrSeqTooShort) {
				t.Fatalf("seqLen %d: error %v, want ErrSeqTooShort", seqLen, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("EncodePair(%q, %q, %d): %v", a, b, seqLen, err)
		}
		if len(enc.InputIDs) != seqLen || len(enc.TokenTypeIDs) != seqLen || len(enc.AttentionMask) != seqLen {
			t.Fatalf("lengths %d %d %d, want %d", len(enc.InputIDs), len(enc.TokenTypeIDs), len(enc.AttentionMask), seqLen)
		}
		n := 0 // real tokens: the mask must be 1...1 0...0
		for n < seqLen && enc.AttentionMask[n] == 1 {
			n++
		}
		for i := n; i < seqLen; i++ {
			if enc.AttentionMask[i] != 0 || enc.InputIDs[i] != tok.pad || enc.TokenTypeIDs[i] != 0 {
				t.Fatalf("position %d after the mask's ones: mask %d id %d type %d", i, enc.AttentionMask[i], enc.InputIDs[i], enc.TokenTypeIDs[i])
			}
		}
		for i, id := range enc.InputIDs {
			if id < 0 || int(id) >= tok.VocabSize() {
				t.Fatalf("id %d at %d out of range", id, i)
			}
		}
		if enc.InputIDs[0] != tok.cls || enc.InputIDs[n-1] != tok.sep {
			t.Fatalf("missing [CLS]/[SEP]: %v", enc.InputIDs[:n])
		}
		// Types: 0 through the first [SEP], then 1 (pairs only).
		ta, tb := tok.Encode(a), tok.Encode(b)
		m := seqLen - min
		n1, n2 := min2(len(ta), m), 0
		if b != "" {
			n1, n2 = LongestFirst(len(ta), len(tb), m)
		}
		if n != n1+n2+min {
			t.Fatalf("%d real tokens, want %d+%d+%d", n, n1, n2, min)
		}
		if !slices.Equal(enc.InputIDs[1:1+n1], ta[:n1]) || enc.InputIDs[1+n1] != tok.sep {
			t.Fatalf("segment a mismatch")
		}
		for i := 0; i < n; i++ {
			want := int32(0)
			if b != "" && i > n1+1 {
				want = 1
			}
			if enc.TokenTypeIDs[i] != want {
				t.Fatalf("type %d at %d, want %d", enc.TokenTypeIDs[i], i, want)
			}
		}
		if b != "" && !slices.Equal(enc.InputIDs[2+n1:2+n1+n2], tb[:n2]) {
			t.Fatalf("segment b mismatch")
		}
		if n1+n2 > m || n1 > len(ta) || n2 > len(tb) {
			t.Fatalf("bad truncation %d %d of %d %d to %d", n1, n2, len(ta), len(tb), m)
		}
	})
}

func min2(a, b int) int {
	if a < b {
		return a
	}
	return b
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
