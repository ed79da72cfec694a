package tokenizer

import "unicode"

// Character classes of the BERT normalizer and pre-tokenizer, as Hugging Face
// tokenizers' BertNormalizer / BertPreTokenizer define them:
//
//   - drop: removed by clean_text: U+0000, U+FFFD and every "Other" character
//     (Cc, Cf, Co, Cs and unassigned Cn) except \t \n \r.
//   - space: \t \n \r and the Z categories (Zs, Zl, Zp), i.e. Unicode
//     White_Space minus the control characters, which were dropped first.
//   - punct: ASCII 33-47, 58-64, 91-96, 123-126 and the P categories.
//   - mn: nonspacing marks, removed by strip_accents after NFD.
const (
	cDrop uint8 = 1 << iota
	cSpace
	cPunct
	cMn
)

// bmpClass holds the class bits of every BMP code point; code points above
// it (emoji, supplementary ideographs) are classified on demand.
var bmpClass [0x10000]uint8

func init() {
	for i := range bmpClass {
		bmpClass[i] = cDrop // unassigned until a category claims it
	}
	for _, t := range []*unicode.RangeTable{unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z} {
		markBMP(t, 0, cDrop)
	}
	markBMP(unicode.Z, cSpace, 0)
	markBMP(unicode.P, cPunct, 0)
	markBMP(unicode.Mn, cMn, 0)
	for _, r := range "\t\n\r" {
		bmpClass[r] = cSpace
	}
	for r := 0; r < 0x80; r++ {
		if isASCIIPunct(byte(r)) {
			bmpClass[r] |= cPunct
		}
	}
	bmpClass[0xFFFD] = cDrop
}

// markBMP sets and clears bits on the BMP code points of t.
func markBMP(t *unicode.RangeTable, set, clear uint8) {
	for _, r := range t.R16 {
		for c := int(r.Lo); c <= int(r.Hi); c += int(r.Stride) {
			bmpClass[c] = bmpClass[c]&^clear | set
		}
	}
	for _, r := range t.R32 {
		for c := int(r.Lo); c <= int(r.Hi) && c < len(bmpClass); c += int(r.Stride) {
			bmpClass[c] = bmpClass[c]&^clear | set
		}
	}
}

func isASCIIPunct(c byte) bool {
	return c >= 33 && c <= 47 || c >= 58 && c <= 64 || c >= 91 && c <= 96 || c >= 123 && c <= 126
}

// class returns the class bits of r.
func class(r rune) uint8 {
	if r >= 0 && r < rune(len(bmpClass)) {
		return bmpClass[r]
	}
	var c uint8
	switch {
	case r > unicode.MaxRune || !unicode.In(r, unicode.L, unicode.M, unicode.N, unicode.P, unicode.S, unicode.Z):
		// Cc, Cf, Co, Cs or unassigned.
		return cDrop
	case unicode.IsPunct(r):
		c = cPunct
	case unicode.Is(unicode.Z, r):
		c = cSpace
	case unicode.Is(unicode.Mn, r):
		c = cMn
	}
	return c
}

// isCJK reports whether r is a "Chinese character" that BERT splits into its
// own word. The ranges are those of Hugging Face tokenizers' BertNormalizer,
// which differ from Google's original tokenization.py in one place: the
// Rust code starts the fifth range at U+2B920, not U+2B820, so U+2B820-2B91F
// (CJK Extension E's first 256 ideographs) are not split. The golden data was
// produced by the Rust implementation; we follow it.
func isCJK(r rune) bool {
	switch {
	case r < 0x3400:
		return false
	case r <= 0x4DBF:
		return true
	case r >= 0x4E00 && r <= 0x9FFF,
		r >= 0xF900 && r <= 0xFAFF,
		r >= 0x20000 && r <= 0x2A6DF,
		r >= 0x2A700 && r <= 0x2B73F,
		r >= 0x2B740 && r <= 0x2B81F,
		r >= 0x2B920 && r <= 0x2CEAF,
		r >= 0x2F800 && r <= 0x2FA1F:
		return true
	}
	return false
}
