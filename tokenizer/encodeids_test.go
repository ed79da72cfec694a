package tokenizer

import (
	"reflect"
	"testing"
)

// EncodeIDs lays out ids exactly as EncodePair lays out the text they come
// from, truncation included.
func TestEncodeIDsMatchesEncodePair(t *testing.T) {
	tok := Default()
	pairs := [][2]string{
		{"The cat sat on the mat.", "A cat was sitting on a mat."},
		{"short", "a much longer second sentence with many more words in it than the first"},
		{"one two three four five six seven eight nine ten eleven twelve", "x"},
		{"only a", ""},
		{"", "only b"},
	}
	for _, p := range pairs {
		for _, seqLen := range []int{3, 5, 8, 13, 64} {
			want, err := tok.EncodePair(p[0], p[1], seqLen)
			if err != nil {
				continue // a single sequence at seqLen 3 is fine, a pair is not: both must agree
			}
			got, err := tok.EncodeIDs(tok.Encode(p[0]), tok.Encode(p[1]), p[1] != "", seqLen)
			if err != nil {
				t.Fatalf("%q at %d: %v", p, seqLen, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%q at %d:\n got %+v\nwant %+v", p, seqLen, got, want)
			}
		}
	}
	if _, err := tok.EncodeIDs([]int32{1}, []int32{2}, true, 2); err == nil {
		t.Error("a pair in 2 tokens was accepted")
	}
}
