package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Encoding is the model input for one sequence or sequence pair, each slice
// exactly seqLen long.
type Encoding struct {
	InputIDs      []int32 // [CLS] a [SEP] (b [SEP]) then [PAD]s
	TokenTypeIDs  []int32 // 0 through the first [SEP], 1 for b and its [SEP], 0 on padding
	AttentionMask []int32 // 1 on real tokens, 0 on padding
}

// Tokenize returns the WordPiece tokens of text, without [CLS]/[SEP].
func (t *Tokenizer) Tokenize(text string) []string {
	ids := t.Encode(text)
	toks := make([]string, len(ids))
	for i, id := range ids {
		toks[i] = t.tokens[id]
	}
	return toks
}

// Encode returns the token ids of text, without special tokens, padding or
// truncation.
func (t *Tokenizer) Encode(text string) []int32 {
	sc := t.scratch.Get().(*scratch)
	k := sink{keep: -1}
	t.encode(text, &k, sc)
	t.scratch.Put(sc)
	if k.ids == nil {
		return []int32{}
	}
	return k.ids
}

// EncodePair encodes the pair (a, b) as [CLS] a [SEP] b [SEP], or the single
// sequence a as [CLS] a [SEP] when b == "" (note: Hugging Face, given an empty
// second string, would still emit the pair form [CLS] a [SEP] [SEP]; an empty
// a with a non-empty b is a pair, as there). The result is truncated like
// Hugging Face truncation="longest_first" and padded with [PAD] to seqLen.
// seqLen must be at least 3 for a pair and 2 for a single sequence
// (ErrSeqTooShort), and at most MaxSeqLen (ErrSeqTooLong).
//
// Longest-first truncation, as the Rust tokenizers library does it (m is
// seqLen minus the special tokens): if len(a)+len(b) <= m nothing is cut;
// if the shorter one leaves room, the longer one is cut to m-len(shorter);
// otherwise both are cut, the shorter to m/2 and the longer to m/2 + m%2,
// where on equal lengths b counts as the longer one. Tokens are removed from
// the end.
func (t *Tokenizer) EncodePair(a, b string, seqLen int) (Encoding, error) {
	pair := b != ""
	added := 2
	if pair {
		added = 3
	}
	if seqLen < added {
		return Encoding{}, fmt.Errorf("%w: %d < %d", ErrSeqTooShort, seqLen, added)
	}
	if seqLen > MaxSeqLen {
		return Encoding{}, fmt.Errorf("%w: %d > %d", ErrSeqTooLong, seqLen, MaxSeqLen)
	}
	m := seqLen - added

	sc := t.scratch.Get().(*scratch)
	defer t.scratch.Put(sc)
	ka := sink{ids: sc.a[:0], keep: m}
	t.encode(a, &ka, sc)
	sc.a = ka.ids[:0]
	n1, n2 := min(ka.n, m), 0
	var kb sink
	if pair {
		kb = sink{ids: sc.b[:0], keep: m}
		t.encode(b, &kb, sc)
		sc.b = kb.ids[:0]
		n1, n2 = LongestFirst(ka.n, kb.n, m)
	}

	return t.layout(ka.ids[:n1], kb.ids[:n2], pair, seqLen), nil
}

// EncodeIDs lays out the token ids a and b (no special tokens) as EncodePair
// lays out text: [CLS] a [SEP] b [SEP] (b omitted when pair is false),
// truncated longest-first and padded to seqLen. Load generators use it to
// make inputs of given lengths.
func (t *Tokenizer) EncodeIDs(a, b []int32, pair bool, seqLen int) (Encoding, error) {
	added := 2
	if pair {
		added = 3
	}
	if seqLen < added {
		return Encoding{}, fmt.Errorf("%w: %d < %d", ErrSeqTooShort, seqLen, added)
	}
	if seqLen > MaxSeqLen {
		return Encoding{}, fmt.Errorf("%w: %d > %d", ErrSeqTooLong, seqLen, MaxSeqLen)
	}
	m := seqLen - added
	n1, n2 := min(len(a), m), 0
	if pair {
		n1, n2 = LongestFirst(len(a), len(b), m)
	}
	return t.layout(a[:n1], b[:n2], pair, seqLen), nil
}

// layout writes [CLS] a [SEP] (b [SEP]) and the padding; a and b fit.
func (t *Tokenizer) layout(a, b []int32, pair bool, seqLen int) Encoding {
	buf := make([]int32, 3*seqLen)
	enc := Encoding{
		InputIDs:      buf[:seqLen:seqLen],
		TokenTypeIDs:  buf[seqLen : 2*seqLen : 2*seqLen],
		AttentionMask: buf[2*seqLen:],
	}
	ids := enc.InputIDs
	p := 0
	ids[p] = t.cls
	p++
	p += copy(ids[p:], a)
	ids[p] = t.sep
	p++
	if pair {
		q := p
		p += copy(ids[p:], b)
		ids[p] = t.sep
		p++
		for i := q; i < p; i++ {
			enc.TokenTypeIDs[i] = 1
		}
	}
	for i := 0; i < p; i++ {
		enc.AttentionMask[i] = 1
	}
	if t.pad != 0 {
		for i := p; i < seqLen; i++ {
			ids[i] = t.pad
		}
	}
	return enc
}

// LongestFirst returns the lengths that Hugging Face tokenizers'
// longest_first truncation keeps of two sequences of n1 and n2 tokens when
// they may total at most m tokens. See EncodePair.
func LongestFirst(n1, n2, m int) (int, int) {
	if m <= 0 {
		return 0, 0
	}
	if n1+n2 <= m {
		return n1, n2
	}
	swap := n1 > n2
	if swap {
		n1, n2 = n2, n1
	}
	if n1 > m {
		n2 = n1
	} else {
		n2 = max(n1, m-n1)
	}
	if n1+n2 > m {
		n1 = m / 2
		n2 = n1 + m%2
	}
	if swap {
		n1, n2 = n2, n1
	}
	return n1, n2
}

// sink collects token ids: all are counted, the first keep are stored
// (keep < 0: all).
type sink struct {
	ids  []int32
	n    int
	keep int
}

func (k *sink) add(id int32) {
	if k.keep < 0 || len(k.ids) < k.keep {
		k.ids = append(k.ids, id)
	}
	k.n++
}

// scratch holds the reusable buffers of one encode call.
type scratch struct {
	chunk []byte // cleaned text between two spaces
	nfd   []byte // chunk after NFD
	iter  norm.Iter
	word  []byte // normalized word between punctuation
	a, b  []int32
}

// encode appends the ids of text to k: special tokens are cut out of the raw
// text, the rest goes through the normalizer and WordPiece.
func (t *Tokenizer) encode(text string, k *sink, sc *scratch) {
	for len(text) > 0 {
		i := strings.IndexByte(text, '[')
		if i < 0 {
			break
		}
		var hit *special
		for j := range t.specials {
			if strings.HasPrefix(text[i:], t.specials[j].text) {
				hit = &t.specials[j]
				break
			}
		}
		if hit == nil {
			// Not a special token: normalize through this '[' (a
			// punctuation mark, so a word boundary) and look further.
			t.normalize(text[:i+1], k, sc)
			text = text[i+1:]
			continue
		}
		t.normalize(text[:i], k, sc)
		k.add(hit.id)
		text = text[i+len(hit.text):]
	}
	t.normalize(text, k, sc)
}

// normalize cleans text, splits it at spaces and CJK ideographs into chunks
// and hands each chunk to flushChunk. Text boundaries are word boundaries.
func (t *Tokenizer) normalize(text string, k *sink, sc *scratch) {
	chunk := sc.chunk[:0]
	ascii := true
	for i := 0; i < len(text); {
		c := text[i]
		if c < utf8.RuneSelf {
			i++
			switch cls := bmpClass[c]; {
			case cls&cDrop != 0:
			case cls&cSpace != 0:
				chunk = t.flushChunk(chunk, ascii, k, sc)
				ascii = true
			default:
				chunk = append(chunk, c)
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(text[i:])
		cls := class(r) // invalid UTF-8 is U+FFFD: dropped
		switch {
		case cls&cDrop != 0:
		case cls&cSpace != 0:
			chunk = t.flushChunk(chunk, ascii, k, sc)
			ascii = true
		case isCJK(r):
			chunk = t.flushChunk(chunk, ascii, k, sc)
			chunk = append(chunk, text[i:i+size]...)
			chunk = t.flushChunk(chunk, false, k, sc)
			ascii = true
		default:
			chunk = append(chunk, text[i:i+size]...)
			ascii = false
		}
		i += size
	}
	sc.chunk = t.flushChunk(chunk, ascii, k, sc)
}

// flushChunk lowercases / strips accents from a cleaned, space-free chunk,
// splits it around punctuation and WordPieces the words. It returns
// chunk[:0] for reuse.
func (t *Tokenizer) flushChunk(chunk []byte, ascii bool, k *sink, sc *scratch) []byte {
	if len(chunk) == 0 {
		return chunk
	}
	src := chunk
	if !ascii && t.lowercase {
		// NFD never reorders across a space or CJK ideograph (both are
		// starters), so per-chunk NFD equals whole-text NFD.
		// (norm.Iter, reused, does not allocate; Form.Append does.)
		sc.iter.Init(norm.NFD, chunk)
		nfd := sc.nfd[:0]
		for !sc.iter.Done() {
			nfd = append(nfd, sc.iter.Next()...)
		}
		sc.nfd, src = nfd, nfd
	}
	word := sc.word[:0]
	nr := 0 // runes in word
	for i := 0; i < len(src); {
		c := src[i]
		if c < utf8.RuneSelf {
			i++
			if isASCIIPunct(c) {
				word = t.flushWord(word, nr, k)
				nr = 0
				t.flushWord(append(word, c), 1, k)
				continue
			}
			if t.lowercase && 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			word = append(word, c)
			nr++
			continue
		}
		r, size := utf8.DecodeRune(src[i:])
		i += size
		cls := class(r)
		if t.lowercase && cls&cMn != 0 {
			continue
		}
		if t.lowercase {
			// Rust lowercases with the full mapping, which differs from
			// unicode.ToLower only for U+0130 (to "i\u0307"); NFD has
			// already split that into I + U+0307 here.
			if l := unicode.ToLower(r); l != r {
				r = l
				cls = class(r)
			}
		}
		if cls&cPunct != 0 {
			word = t.flushWord(word, nr, k)
			nr = 0
			t.flushWord(utf8.AppendRune(word, r), 1, k)
			continue
		}
		word = utf8.AppendRune(word, r)
		nr++
	}
	sc.word = t.flushWord(word, nr, k)
	return chunk[:0]
}

// flushWord WordPieces word (nr runes) into k and returns word[:0].
func (t *Tokenizer) flushWord(word []byte, nr int, k *sink) []byte {
	if len(word) == 0 {
		return word
	}
	if nr > MaxWordChars {
		k.add(t.unk)
		return word[:0]
	}
	if id, ok := t.vocab[string(word)]; ok {
		k.add(id)
		return word[:0]
	}
	mark, n0 := len(k.ids), k.n
	for start := 0; start < len(word); {
		// Longest vocabulary token that is a prefix of word[start:]: walk
		// the trie from the root (word start) or from the "##" node. A
		// match always ends on a rune boundary, as tokens are valid UTF-8.
		node := int32(0)
		if start > 0 {
			node = t.trie.cont
		}
		id, end := int32(-1), 0
		for i := start; i < len(word) && node >= 0; i++ {
			node = t.trie.next(node, word[i])
			if node >= 0 && t.trie.id[node] >= 0 {
				id, end = t.trie.id[node], i+1
			}
		}
		if id < 0 {
			k.ids, k.n = k.ids[:mark], n0
			k.add(t.unk)
			return word[:0]
		}
		k.add(id)
		start = end
	}
	return word[:0]
}

// trie is a byte trie of the vocabulary: greedy longest-match WordPiece walks
// it once per piece instead of hashing every candidate substring.
type trie struct {
	root  [256]int32       // children of the root, -1 if none
	edges map[uint64]int32 // node<<8 | byte -> child, below the root
	id    []int32          // token id ending at each node, -1 if none
	cont  int32            // the node of "##", where continuations start; -1 if none
}

func (tr *trie) next(node int32, c byte) int32 {
	if node == 0 {
		return tr.root[c]
	}
	if child, ok := tr.edges[uint64(node)<<8|uint64(c)]; ok {
		return child
	}
	return -1
}

func newTrie(tokens []string) *trie {
	tr := &trie{edges: make(map[uint64]int32, 4*len(tokens)), id: []int32{-1}}
	for i := range tr.root {
		tr.root[i] = -1
	}
	for id, tok := range tokens {
		node := int32(0)
		for i := 0; i < len(tok); i++ {
			child := tr.next(node, tok[i])
			if child < 0 {
				child = int32(len(tr.id))
				tr.id = append(tr.id, -1)
				if node == 0 {
					tr.root[tok[i]] = child
				} else {
					tr.edges[uint64(node)<<8|uint64(tok[i])] = child
				}
			}
			node = child
		}
		tr.id[node] = int32(id)
	}
	tr.cont = tr.next(0, '#')
	if tr.cont >= 0 {
		tr.cont = tr.next(tr.cont, '#')
	}
	return tr
}
