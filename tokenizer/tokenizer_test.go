package tokenizer

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bertq/bertq/internal/fixtures"
)

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestGoldenTokenizer(t *testing.T) {
	var golden struct {
		VocabSHA256 string `json:"vocab_sha256"`
		Lowercase   bool   `json:"lowercase"`
		Singles     []struct {
			Text   string   `json:"text"`
			IDs    []int32  `json:"ids"`
			Tokens []string `json:"tokens"`
		} `json:"singles"`
	}
	readJSON(t, fixtures.Path(t, "golden-tokenizer.json"), &golden)
	if len(golden.Singles) == 0 {
		t.Fatal("golden-tokenizer.json has no singles")
	}
	tok := Default()
	if tok.Digest() != golden.VocabSHA256 {
		t.Fatalf("embedded vocab sha256 %s, golden %s", tok.Digest(), golden.VocabSHA256)
	}
	if tok.Lowercase() != golden.Lowercase {
		t.Fatalf("Lowercase() = %v, golden %v", tok.Lowercase(), golden.Lowercase)
	}
	for _, g := range golden.Singles {
		if got := tok.Tokenize(g.Text); !slices.Equal(got, g.Tokens) {
			t.Errorf("Tokenize(%q)\n got %q\nwant %q", g.Text, got, g.Tokens)
		}
		if got := tok.Encode(g.Text); !slices.Equal(got, g.IDs) {
			t.Errorf("Encode(%q)\n got %v\nwant %v", g.Text, got, g.IDs)
		}
	}
}

func TestGoldenPairs(t *testing.T) {
	var golden struct {
		Pairs []struct {
			A             string  `json:"a"`
			B             *string `json:"b"`
			InputIDs      []int32 `json:"input_ids"`
			TokenTypeIDs  []int32 `json:"token_type_ids"`
			AttentionMask []int32 `json:"attention_mask"`
		} `json:"pairs"`
	}
	readJSON(t, fixtures.Path(t, "golden-pairs.json"), &golden)
	if len(golden.Pairs) == 0 {
		t.Fatal("golden-pairs.json has no pairs")
	}
	tok := Default()
	for i, p := range golden.Pairs {
		b := ""
		if p.B != nil {
			b = *p.B
		}
		if p.B != nil && b == "" {
			t.Fatalf("pair %d: empty b, which EncodePair treats as a single sequence", i)
		}
		enc, err := tok.EncodePair(p.A, b, len(p.InputIDs))
		if err != nil {
			t.Fatalf("pair %d: %v", i, err)
		}
		if !slices.Equal(enc.InputIDs, p.InputIDs) {
			t.Errorf("pair %d (%.40q / %.40q) input_ids\n got %v\nwant %v", i, p.A, b, enc.InputIDs, p.InputIDs)
		}
		if !slices.Equal(enc.TokenTypeIDs, p.TokenTypeIDs) {
			t.Errorf("pair %d token_type_ids\n got %v\nwant %v", i, enc.TokenTypeIDs, p.TokenTypeIDs)
		}
		if !slices.Equal(enc.AttentionMask, p.AttentionMask) {
			t.Errorf("pair %d attention_mask\n got %v\nwant %v", i, enc.AttentionMask, p.AttentionMask)
		}
	}
}

// The shipped vocabulary must be the reference copy in testdata/.
func TestDefaultVocabMatchesFixture(t *testing.T) {
	want, err := os.ReadFile(fixtures.Path(t, "vocab-bert-base-uncased.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(defaultVocab, want) {
		t.Fatal("tokenizer/vocab.txt differs from testdata/vocab-bert-base-uncased.txt")
	}
}

func TestDefaultVocab(t *testing.T) {
	tok := Default()
	if tok != Default() {
		t.Error("Default() is not shared")
	}
	if tok.VocabSize() != 30522 {
		t.Errorf("VocabSize = %d", tok.VocabSize())
	}
	want := map[string]int32{PadToken: 0, UnkToken: 100, ClsToken: 101, SepToken: 102, MaskToken: 103}
	for name, id := range want {
		if got, ok := tok.TokenID(name); !ok || got != id {
			t.Errorf("TokenID(%s) = %d, %v", name, got, ok)
		}
		if tok.Token(id) != name {
			t.Errorf("Token(%d) = %q", id, tok.Token(id))
		}
	}
	if tok.Token(-1) != "" || tok.Token(30522) != "" {
		t.Error("Token out of range should be empty")
	}
	vb := tok.VocabBytes()
	vb[0] = 'X' // a copy: must not affect the tokenizer
	if tok.VocabBytes()[0] != '[' {
		t.Error("VocabBytes is not a copy")
	}
	if !tok.Lowercase() {
		t.Error("default tokenizer should lowercase")
	}
}

// testVocab is a small cased vocabulary.
const testVocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nHello\nhello\n##lo\nhel\n,\n!\n.\nCafé\ncafe\né\n[\n]\ncl\n##s\na\nb\n##b\n"

func newTest(t *testing.T, lowercase bool, opts ...Option) *Tokenizer {
	t.Helper()
	tok, err := New([]byte(testVocab), lowercase, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestRules(t *testing.T) {
	def := Default()
	long := strings.Repeat("a", 101)
	cases := []struct {
		name string
		tok  *Tokenizer
		in   string
		want []string
	}{
		{"cased keeps case and accents", newTest(t, false), "Hello hello Café", []string{"Hello", "hello", "Café"}},
		{"cased unknown case", newTest(t, false), "HELLO", []string{UnkToken}},
		{"uncased lowercases", newTest(t, true), "HELLO Café", []string{"hello", "cafe"}},
		{"continuation pieces", newTest(t, false), "hello hello,hello", []string{"hello", "hello", ",", "hello"}},
		{"word of pieces", newTest(t, false), "abbb", []string{"a", "##b", "##b", "##b"}},
		{"partial match is UNK", newTest(t, false), "abc a", []string{UnkToken, "a"}},
		{"100 chars ok", newTest(t, false), strings.Repeat("b", 100), append([]string{"b"}, slices.Repeat([]string{"##b"}, 99)...)},
		{"101 chars UNK", newTest(t, false), "b" + strings.Repeat("b", 100) + " a", []string{UnkToken, "a"}},
		{"101 multibyte chars UNK", def, strings.Repeat("é", 101), []string{UnkToken}},
		{"100 after accent strip", def, strings.Repeat("e\u0301", 100), def.Tokenize(strings.Repeat("e", 100))},
		{"long word then word", def, long + " hello", []string{UnkToken, "hello"}},
		{"control chars dropped", def, "he\x00l\x01l\x7fo\u200b\u00ad\ufeff wo\u0085rld", []string{"hello", "world"}},
		{"tab newline cr are spaces", def, "a\tb\nc\rd", []string{"a", "b", "c", "d"}},
		{"vertical tab and form feed are dropped", def, "hel\vlo wor\fld", []string{"hello", "world"}},
		{"Zs Zl Zp are spaces", def, "a\u00a0b\u2028c\u2029d\u3000e", []string{"a", "b", "c", "d", "e"}},
		{"private use and unassigned dropped", def, "hel\ue000lo wor\U000E0080ld he\U0010FFFDllo", []string{"hello", "world", "hello"}},
		{"invalid UTF-8 dropped", def, "hel\xfflo \xc3(", []string{"hello", "("}},
		{"U+FFFD dropped", def, "hel\ufffdlo", []string{"hello"}},
		{"specials cut from raw text", def, "a[CLS]b[SEP][MASK]x[UNK][PAD]", []string{"a", ClsToken, "b", SepToken, MaskToken, "x", UnkToken, PadToken}},
		{"specials are case-sensitive", def, "[cls]", []string{"[", "cl", "##s", "]"}},
		{"lone brackets", def, "[[CLS]] [", []string{"[", ClsToken, "]", "["}},
		{"special not normalized", def, "[C\u200bLS]", []string{"[", "cl", "##s", "]"}},
		{"CJK split", def, "中文人", []string{"中", "文", "人"}},
		{"CJK compatibility ideograph goes through NFD", def, "\uf900", def.Tokenize("\u8c48")},
		{"U+2B820 is not split (Rust range starts at 2B920)", def, "\U0002B820\U0002B821", []string{UnkToken}},
		{"U+2B920 is split", def, "\U0002B920\U0002B921", []string{UnkToken, UnkToken}},
		{"punct after NFD", def, "a\u1fefb", []string{"a", "`", "b"}},
		{"unicode punct", def, "a\u2014b\u00bfc", []string{"a", "—", "b", "¿", "c"}},
		{"symbols are not punct", def, "a$b", []string{"a", "$", "b"}},
		{"dotted capital I", def, "İstanbul", def.Tokenize("istanbul")},
		{"final sigma unchanged", def, "ΟΔΟΣ", def.Tokenize("οδοσ")},
		{"empty", def, "", []string{}},
		{"only spaces", def, " \t\n ", []string{}},
	}
	for _, c := range cases {
		got := c.tok.Tokenize(c.in)
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: Tokenize(%q)\n got %q\nwant %q", c.name, c.in, got, c.want)
		}
	}
}

func TestLongestFirst(t *testing.T) {
	// The Rust tokenizers library's own test table (max_length 7), plus ties.
	lens := []int{0, 2, 4, 8}
	want := [4][4][2]int{
		{{0, 0}, {0, 2}, {0, 4}, {0, 7}},
		{{2, 0}, {2, 2}, {2, 4}, {2, 5}},
		{{4, 0}, {4, 2}, {3, 4}, {3, 4}},
		{{7, 0}, {5, 2}, {4, 3}, {3, 4}},
	}
	for i, n1 := range lens {
		for j, n2 := range lens {
			a, b := LongestFirst(n1, n2, 7)
			if [2]int{a, b} != want[i][j] {
				t.Errorf("LongestFirst(%d, %d, 7) = %d, %d, want %v", n1, n2, a, b, want[i][j])
			}
		}
	}
	for _, c := range [][5]int{
		{5, 5, 0, 0, 0},
		{594, 594, 125, 62, 63}, // equal lengths: b gets the odd token
		{600, 594, 125, 63, 62},
		{1, 1000, 125, 1, 124},
		{1000, 0, 125, 125, 0},
		{70, 70, 126, 63, 63},
	} {
		if a, b := LongestFirst(c[0], c[1], c[2]); a != c[3] || b != c[4] {
			t.Errorf("LongestFirst(%d, %d, %d) = %d, %d, want %d, %d", c[0], c[1], c[2], a, b, c[3], c[4])
		}
	}
}

func TestEncodePairShapes(t *testing.T) {
	tok := newTest(t, false)
	enc, err := tok.EncodePair("a b", "hello", 8)
	if err != nil {
		t.Fatal(err)
	}
	want := Encoding{
		InputIDs:      []int32{2, 19, 20, 3, 6, 3, 0, 0},
		TokenTypeIDs:  []int32{0, 0, 0, 0, 1, 1, 0, 0},
		AttentionMask: []int32{1, 1, 1, 1, 1, 1, 0, 0},
	}
	if !reflect.DeepEqual(enc, want) {
		t.Errorf("pair: got %+v\nwant %+v", enc, want)
	}
	enc, err = tok.EncodePair("a b", "", 5)
	if err != nil {
		t.Fatal(err)
	}
	want = Encoding{
		InputIDs:      []int32{2, 19, 20, 3, 0},
		TokenTypeIDs:  []int32{0, 0, 0, 0, 0},
		AttentionMask: []int32{1, 1, 1, 1, 0},
	}
	if !reflect.DeepEqual(enc, want) {
		t.Errorf("single: got %+v\nwant %+v", enc, want)
	}
	// Single truncation keeps the head.
	enc, err = tok.EncodePair("a b a b", "", 4)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(enc.InputIDs, []int32{2, 19, 20, 3}) {
		t.Errorf("single truncated: %v", enc.InputIDs)
	}
	// Pair truncation, equal lengths, odd budget: b keeps the extra token.
	enc, err = tok.EncodePair("a a a", "b b b", 8)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(enc.InputIDs, []int32{2, 19, 19, 3, 20, 20, 20, 3}) ||
		!slices.Equal(enc.TokenTypeIDs, []int32{0, 0, 0, 0, 1, 1, 1, 1}) {
		t.Errorf("pair truncated: %v %v", enc.InputIDs, enc.TokenTypeIDs)
	}
	// Minimal lengths.
	enc, err = tok.EncodePair("a", "b", 3)
	if err != nil || !slices.Equal(enc.InputIDs, []int32{2, 3, 3}) || !slices.Equal(enc.TokenTypeIDs, []int32{0, 0, 1}) {
		t.Errorf("seq 3 pair: %v %v", enc, err)
	}
	enc, err = tok.EncodePair("a", "", 2)
	if err != nil || !slices.Equal(enc.InputIDs, []int32{2, 3}) {
		t.Errorf("seq 2 single: %v %v", enc, err)
	}
	// Empty a with b is a pair.
	enc, err = tok.EncodePair("", "a", 5)
	if err != nil || !slices.Equal(enc.InputIDs, []int32{2, 3, 19, 3, 0}) {
		t.Errorf("empty a: %v %v", enc, err)
	}
}

func TestEncodePairPadNonZero(t *testing.T) {
	tok, err := New([]byte("[UNK]\n[CLS]\n[SEP]\n[PAD]\na\n"), true)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := tok.EncodePair("a", "", 5)
	if err != nil || !slices.Equal(enc.InputIDs, []int32{1, 4, 2, 3, 3}) {
		t.Errorf("got %v %v", enc, err)
	}
}

func TestSeqLenErrors(t *testing.T) {
	tok := Default()
	for _, c := range []struct {
		a, b string
		n    int
		err  error
	}{
		{"a", "b", 2, ErrSeqTooShort},
		{"a", "b", 0, ErrSeqTooShort},
		{"a", "b", -5, ErrSeqTooShort},
		{"a", "", 1, ErrSeqTooShort},
		{"", "", 0, ErrSeqTooShort},
		{"a", "b", MaxSeqLen + 1, ErrSeqTooLong},
	} {
		if _, err := tok.EncodePair(c.a, c.b, c.n); !errors.Is(err, c.err) {
			t.Errorf("EncodePair(%q, %q, %d) error %v, want %v", c.a, c.b, c.n, err, c.err)
		}
	}
}

func TestBadVocab(t *testing.T) {
	for _, c := range []struct {
		name, vocab, msg string
	}{
		{"empty", "", "empty"},
		{"missing specials", "[PAD]\n[UNK]\nhello\n", "[[CLS] [SEP]]"},
		{"duplicate", "[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\nx\n", "line 6"},
		{"empty line", "[PAD]\n[UNK]\n\n[CLS]\n[SEP]\n", "line 3 is empty"},
		{"trailing blank line", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n\n", "line 5 is empty"},
		{"invalid utf8", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n\xff\n", "UTF-8"},
	} {
		_, err := New([]byte(c.vocab), true)
		if !errors.Is(err, ErrBadVocab) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: error %v, want ErrBadVocab mentioning %q", c.name, err, c.msg)
		}
	}
	// CRLF and a missing final newline are accepted.
	tok, err := New([]byte("[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhi"), true)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 5 || !slices.Equal(tok.Tokenize("HI"), []string{"hi"}) {
		t.Errorf("CRLF vocab: size %d, %q", tok.VocabSize(), tok.Tokenize("HI"))
	}
	if _, ok := tok.TokenID(MaskToken); ok {
		t.Error("no [MASK] expected")
	}
	if got := tok.Tokenize("[MASK]"); !slices.Equal(got, []string{UnkToken, UnkToken, UnkToken}) {
		t.Errorf("[MASK] without a [MASK] token: %q", got)
	}
}

func TestLoadAndLoadDir(t *testing.T) {
	dir := t.TempDir()
	vocabPath := filepath.Join(dir, "vocab.txt")
	if err := os.WriteFile(vocabPath, []byte(testVocab), 0o644); err != nil {
		t.Fatal(err)
	}
	tok, err := Load(vocabPath)
	if err != nil || !tok.Lowercase() {
		t.Fatalf("Load: %v", err)
	}
	if tok.Digest() != newTest(t, true).Digest() || len(tok.Digest()) != 64 {
		t.Errorf("digest %q", tok.Digest())
	}
	tok, err = Load(vocabPath, WithLowercase(false))
	if err != nil || tok.Lowercase() {
		t.Fatalf("Load cased: %v", err)
	}
	if got := tok.Tokenize("Café HELLO"); !slices.Equal(got, []string{"Café", UnkToken}) {
		t.Errorf("Load cased: %q", got)
	}
	if _, err := Load(filepath.Join(dir, "nope.txt")); err == nil {
		t.Error("Load of a missing file succeeded")
	}

	// No tokenizer_config.json: do_lower_case defaults to true, as in HF.
	tok, err = LoadDir(dir)
	if err != nil || !tok.Lowercase() {
		t.Fatalf("LoadDir without config: %v", err)
	}
	cfg := filepath.Join(dir, "tokenizer_config.json")
	for _, c := range []struct {
		json  string
		lower bool
		err   error
	}{
		{`{"do_lower_case": false, "model_max_length": 512}`, false, nil},
		{`{"do_lower_case": true, "strip_accents": null}`, true, nil},
		{`{"strip_accents": true, "tokenize_chinese_chars": true}`, true, nil},
		{`{"do_lower_case": false, "strip_accents": false}`, false, nil},
		{`{"do_lower_case": true, "strip_accents": false}`, false, ErrBadConfig},
		{`{"do_lower_case": false, "strip_accents": true}`, false, ErrBadConfig},
		{`{"tokenize_chinese_chars": false}`, false, ErrBadConfig},
		{`{"do_lower_case": "yes"}`, false, ErrBadConfig},
		{`not json`, false, ErrBadConfig},
	} {
		if err := os.WriteFile(cfg, []byte(c.json), 0o644); err != nil {
			t.Fatal(err)
		}
		tok, err := LoadDir(dir)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("LoadDir(%s): error %v, want %v", c.json, err, c.err)
			}
			continue
		}
		if err != nil || tok.Lowercase() != c.lower {
			t.Errorf("LoadDir(%s): %v lower=%v", c.json, err, tok != nil && tok.Lowercase())
		}
	}
	if _, err := LoadDir(t.TempDir()); err == nil {
		t.Error("LoadDir without vocab.txt succeeded")
	}
}

// TestHugeInput: a ~900 KB text is tokenized and truncated, in linear time.
func TestHugeInput(t *testing.T) {
	tok := Default()
	var sb strings.Builder
	for sb.Len() < 900_000 {
		sb.WriteString("The quick brown fox jumps over the lazy dog, naïve café 東京 ")
		sb.WriteString(strings.Repeat("qzx", 33) + " [ ") // long unmatched words
	}
	text := sb.String()
	start := time.Now()
	enc, err := tok.EncodePair(text, text[:len(text)/2], 128)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("900 KB pair took %v", el)
	}
	if enc.AttentionMask[127] != 1 || enc.InputIDs[127] != 102 {
		t.Errorf("expected a full, truncated encoding: %v", enc.InputIDs)
	}
	// a is longer, so it keeps the odd token: 63 + 62.
	if n := slices.Index(enc.TokenTypeIDs, 1); n != 65 {
		t.Errorf("b starts at %d, want 65", n)
	}
	if got := tok.Encode(text); len(got) < 100_000 {
		t.Errorf("Encode of 900 KB gave %d tokens", len(got))
	}
}

func TestConcurrent(t *testing.T) {
	tok := Default()
	want, _ := tok.EncodePair("Hello, World! naïve café", "東京タワーは高い", 32)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				got, err := tok.EncodePair("Hello, World! naïve café", "東京タワーは高い", 32)
				if err != nil || !reflect.DeepEqual(got, want) {
					t.Errorf("concurrent mismatch: %v %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkEncodePair(b *testing.B) {
	tok := Default()
	a := "The company said its quarterly profit rose 12 percent, beating naïve estimates in Zürich."
	c := "Quarterly profit at the company climbed 12 percent, it said on Tuesday."
	b.ReportAllocs()
	for b.Loop() {
		if _, err := tok.EncodePair(a, c, 128); err != nil {
			b.Fatal(err)
		}
	}
}
