package schemas

import (
	"math"
	"testing"
)

func TestSoftmax(t *testing.T) {
	for _, c := range []struct {
		logits, want []float32
	}{
		{[]float32{0, 0}, []float32{0.5, 0.5}},
		{[]float32{1000, 1000}, []float32{0.5, 0.5}}, // no overflow: shifted by the max
		{[]float32{-1000, 0}, []float32{0, 1}},
		{[]float32{0, float32(math.Log(3))}, []float32{0.25, 0.75}},
		{[]float32{2}, []float32{1}},
		{nil, []float32{}},
	} {
		got := Softmax(c.logits)
		if len(got) != len(c.want) {
			t.Fatalf("Softmax(%v) = %v", c.logits, got)
		}
		for i := range got {
			if math.Abs(float64(got[i]-c.want[i])) > 1e-7 {
				t.Errorf("Softmax(%v) = %v, want %v", c.logits, got, c.want)
				break
			}
		}
	}
}

func TestArgmax(t *testing.T) {
	for _, c := range []struct {
		v    []float32
		want int
	}{
		{[]float32{0.1, 0.9}, 1},
		{[]float32{0.9, 0.1}, 0},
		{[]float32{1, 3, 3}, 1}, // the first on ties
		{[]float32{-5}, 0},
	} {
		if got := Argmax(c.v); got != c.want {
			t.Errorf("Argmax(%v) = %d, want %d", c.v, got, c.want)
		}
	}
}
