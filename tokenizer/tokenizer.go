// Package tokenizer is BERT's WordPiece tokenizer, matching Hugging Face
// BertTokenizer (transformers 5, backed by the Rust tokenizers library) and
// tokenizers' BertWordPieceTokenizer token for token:
//
//  1. The special tokens [CLS] [SEP] [MASK] [UNK] [PAD] are cut out of the
//     raw text first (exact, case-sensitive match, anywhere in the text, even
//     inside a word) and map to their own ids.
//  2. Cleaning: U+0000, U+FFFD and every Unicode "Other" character (Cc, Cf,
//     Co, unassigned) except \t \n \r are dropped; \t \n \r and every Z
//     character (Zs, Zl, Zp) become a space.
//  3. CJK ideographs become words of their own.
//  4. Uncased (lowercase) mode: NFD, nonspacing marks (Mn) removed, then
//     lowercased. Cased mode does neither.
//  5. Words are split at spaces and around every punctuation character
//     (ASCII 33-47, 58-64, 91-96, 123-126 and the P categories).
//  6. Each word is split greedily, longest match first, into vocabulary
//     pieces, continuations prefixed "##". A word of more than 100 characters,
//     or one that cannot be covered by pieces, becomes a single [UNK].
//
// Invalid UTF-8 decodes to U+FFFD and is therefore dropped. EncodePair builds
// pairs and truncates them as Hugging Face does, except that an empty second
// sentence makes a single sequence (see EncodePair). A Tokenizer is immutable
// and safe for concurrent use.
package tokenizer

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"unicode/utf8"
)

// The standard 30,522-token bert-base-uncased / bert-large-uncased vocabulary.
//
//go:embed vocab.txt
var defaultVocab []byte

// Special token names.
const (
	PadToken  = "[PAD]"
	UnkToken  = "[UNK]"
	ClsToken  = "[CLS]"
	SepToken  = "[SEP]"
	MaskToken = "[MASK]"
)

// MaxWordChars is the longest word, in characters (runes) after
// normalization, that WordPiece splits; longer words become [UNK].
const MaxWordChars = 100

// MaxSeqLen bounds the seqLen accepted by EncodePair; it only guards against
// absurd allocations (BERT itself stops at 512).
const MaxSeqLen = 1 << 20

// Tokenizer is a BERT WordPiece tokenizer over one vocabulary.
type Tokenizer struct {
	vocab  map[string]int32
	tokens []string // id -> token
	raw    []byte   // the vocabulary file as given
	digest string

	lowercase bool // do_lower_case
	trie      *trie

	unk, cls, sep, pad int32
	specials           []special // never-split tokens present in the vocabulary

	scratch sync.Pool // *scratch

	wordsOnce sync.Once
	words     []int32 // whole-word tokens (see Words), found on first use
}

type special struct {
	text string
	id   int32
}

// Option adjusts how Load, LoadDir and New build a Tokenizer.
type Option func(*config)

type config struct {
	lowercase bool
}

// WithLowercase sets do_lower_case (default true for Load): lowercase the
// text and strip accents (Hugging Face's strip_accents follows
// do_lower_case unless set; this package supports only that default, so a
// Tokenizer is fully described by its vocabulary and Lowercase()).
func WithLowercase(on bool) Option { return func(c *config) { c.lowercase = on } }

var (
	defaultOnce sync.Once
	defaultTok  *Tokenizer
)

// Default returns the shared tokenizer of the embedded uncased BERT
// vocabulary (bert-base-uncased, which bert-large-uncased shares), lowercasing.
func Default() *Tokenizer {
	defaultOnce.Do(func() {
		t, err := New(defaultVocab, true)
		if err != nil {
			panic("tokenizer: embedded vocabulary: " + err.Error())
		}
		defaultTok = t
	})
	return defaultTok
}

// Load reads a WordPiece vocab.txt (one token per line, the id being the
// 0-based line number). Without options it lowercases (uncased models).
func Load(vocabPath string, opts ...Option) (*Tokenizer, error) {
	b, err := os.ReadFile(vocabPath)
	if err != nil {
		return nil, fmt.Errorf("tokenizer: reading vocabulary: %w", err)
	}
	return New(b, true, opts...)
}

// LoadDir loads the tokenizer of a Hugging Face checkpoint directory: its
// vocab.txt and, if present, tokenizer_config.json (do_lower_case, default
// true as in Hugging Face). A config this package cannot honour is rejected
// with ErrBadConfig: strip_accents set to other than do_lower_case, or
// tokenize_chinese_chars false.
func LoadDir(dir string) (*Tokenizer, error) {
	vocab, err := os.ReadFile(filepath.Join(dir, "vocab.txt"))
	if err != nil {
		return nil, fmt.Errorf("tokenizer: checkpoint %s: %w", dir, err)
	}
	var opts []Option
	cfgPath := filepath.Join(dir, "tokenizer_config.json")
	cfgBytes, err := os.ReadFile(cfgPath)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("%w: %v", ErrBadConfig, err)
	default:
		var cfg struct {
			DoLowerCase          *bool `json:"do_lower_case"`
			StripAccents         *bool `json:"strip_accents"`
			TokenizeChineseChars *bool `json:"tokenize_chinese_chars"`
		}
		if err := json.Unmarshal(cfgBytes, &cfg); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrBadConfig, cfgPath, err)
		}
		lower := true
		if cfg.DoLowerCase != nil {
			lower = *cfg.DoLowerCase
		}
		opts = append(opts, WithLowercase(lower))
		if cfg.StripAccents != nil && *cfg.StripAccents != lower {
			return nil, fmt.Errorf("%w: %s: strip_accents=%v with do_lower_case=%v is not supported", ErrBadConfig, cfgPath, *cfg.StripAccents, lower)
		}
		if cfg.TokenizeChineseChars != nil && !*cfg.TokenizeChineseChars {
			return nil, fmt.Errorf("%w: %s: tokenize_chinese_chars=false is not supported", ErrBadConfig, cfgPath)
		}
	}
	return New(vocab, true, opts...)
}

// New builds a tokenizer from the bytes of a vocab.txt (one token per line,
// LF or CRLF, the id being the 0-based line number). lowercase is
// do_lower_case; a WithLowercase option overrides it. The bytes are copied.
func New(vocab []byte, lowercase bool, opts ...Option) (*Tokenizer, error) {
	cfg := config{lowercase: lowercase}
	for _, o := range opts {
		o(&cfg)
	}
	t := &Tokenizer{
		raw:       bytes.Clone(vocab),
		lowercase: cfg.lowercase,
	}
	if err := t.parseVocab(); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(t.raw)
	t.digest = hex.EncodeToString(sum[:])
	t.scratch.New = func() any { return new(scratch) }
	return t, nil
}

// parseVocab fills vocab, tokens, trie and the special ids from raw.
func (t *Tokenizer) parseVocab() error {
	data := t.raw
	if len(data) == 0 {
		return fmt.Errorf("%w: empty file", ErrBadVocab)
	}
	if !utf8.Valid(data) {
		return fmt.Errorf("%w: not valid UTF-8", ErrBadVocab)
	}
	n := bytes.Count(data, []byte{'\n'})
	if data[len(data)-1] != '\n' {
		n++ // last line without a newline
	}
	if n > 1<<31-1 {
		return fmt.Errorf("%w: too many tokens", ErrBadVocab)
	}
	t.vocab = make(map[string]int32, n)
	t.tokens = make([]string, 0, n)
	s := string(data) // one allocation; tokens are substrings of it
	for line := 1; len(s) > 0; line++ {
		tok := s
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			tok, s = s[:i], s[i+1:]
		} else {
			s = ""
		}
		tok = trimCR(tok)
		if tok == "" {
			return fmt.Errorf("%w: line %d is empty", ErrBadVocab, line)
		}
		if prev, dup := t.vocab[tok]; dup {
			return fmt.Errorf("%w: line %d: token %q duplicates line %d", ErrBadVocab, line, tok, prev+1)
		}
		id := int32(len(t.tokens))
		t.vocab[tok] = id
		t.tokens = append(t.tokens, tok)
	}
	t.trie = newTrie(t.tokens)
	var missing []string
	for _, sp := range []struct {
		name string
		dst  *int32
	}{{ClsToken, &t.cls}, {SepToken, &t.sep}, {PadToken, &t.pad}, {UnkToken, &t.unk}} {
		id, ok := t.vocab[sp.name]
		if !ok {
			missing = append(missing, sp.name)
		}
		*sp.dst = id
	}
	if missing != nil {
		return fmt.Errorf("%w: missing special token(s) %v", ErrBadVocab, missing)
	}
	for _, name := range []string{PadToken, UnkToken, ClsToken, SepToken, MaskToken} {
		if id, ok := t.vocab[name]; ok {
			t.specials = append(t.specials, special{name, id})
		}
	}
	return nil
}

func trimCR(s string) string {
	if len(s) > 0 && s[len(s)-1] == '\r' {
		return s[:len(s)-1]
	}
	return s
}

// VocabSize is the number of tokens (ids are 0..VocabSize()-1).
func (t *Tokenizer) VocabSize() int { return len(t.tokens) }

// Lowercase reports do_lower_case (which implies accent stripping).
// New(t.VocabBytes(), t.Lowercase()) rebuilds an identical Tokenizer.
func (t *Tokenizer) Lowercase() bool { return t.lowercase }

// Digest is the hex SHA-256 of the vocabulary file's bytes.
func (t *Tokenizer) Digest() string { return t.digest }

// VocabBytes returns a copy of the vocabulary file's bytes.
func (t *Tokenizer) VocabBytes() []byte { return bytes.Clone(t.raw) }

// TokenID returns the id of a vocabulary token.
func (t *Tokenizer) TokenID(token string) (int32, bool) {
	id, ok := t.vocab[token]
	return id, ok
}

// Token returns the token of an id, or "" when out of range.
func (t *Tokenizer) Token(id int32) string {
	if id < 0 || int(id) >= len(t.tokens) {
		return ""
	}
	return t.tokens[id]
}

// RandomWord returns the id of a random ordinary token (none of the
// bracketed special or unused ones), for load generators that need inputs
// of given lengths.
func (t *Tokenizer) RandomWord(rng *rand.Rand) int32 {
	n := len(t.tokens)
	start := rng.Intn(n)
	for i := 0; i < n; i++ {
		id := (start + i) % n
		if tok := t.tokens[id]; !(strings.HasPrefix(tok, "[") && strings.HasSuffix(tok, "]")) {
			return int32(id)
		}
	}
	return int32(start) // a vocabulary of special tokens only
}
