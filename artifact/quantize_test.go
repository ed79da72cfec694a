package artifact

import (
	"math"
	"math/rand"
	"testing"
)

// QuantizeS8 keeps every pair within the 16-bit budget, every value within
// ±127, and each weight within a step of itself; a column that needs no
// pair budget gets the plain ±127 scale.
func TestQuantizeS8(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	const k, n = 257, 40 // an odd k leaves a lone last row
	w := make([]float32, k*n)
	for i := range w {
		switch c := i % n; {
		case c < 10: // gaussian: pairs rarely both large
			w[i] = float32(rng.NormFloat64() * 0.02)
		case c < 20: // uniform: pairs often both large
			w[i] = float32((2*rng.Float64() - 1) * 0.03)
		case c == 20:
			w[i] = 0 // an all-zero column
		default:
			w[i] = float32(rng.NormFloat64())
		}
	}
	w[5*n+30] = 40 // one outlier: the scale follows it, pairs fit anyway
	q, scale := QuantizeS8(w, k, n)
	back := DequantizeS8(q, scale, k, n)
	for c := 0; c < n; c++ {
		var mx float64
		for r := 0; r < k; r++ {
			mx = math.Max(mx, math.Abs(float64(w[r*n+c])))
			if a := abs8(q[r*n+c]); a > 127 {
				t.Fatalf("column %d row %d: |q| = %d", c, r, a)
			}
			if r%2 == 1 {
				if s := abs8(q[(r-1)*n+c]) + abs8(q[r*n+c]); s > 128 {
					t.Fatalf("column %d rows %d-%d: |q1|+|q2| = %d > 128", c, r-1, r, s)
				}
			}
			if d := math.Abs(float64(back[r*n+c] - w[r*n+c])); d > 1.0001*float64(scale[c]) {
				t.Fatalf("column %d row %d: %g came back as %g (scale %g)", c, r, w[r*n+c], back[r*n+c], scale[c])
			}
		}
		if mx == 0 && scale[c] != 1 {
			t.Errorf("all-zero column %d: scale %g, want 1", c, scale[c])
		}
		if mx > 0 && float64(scale[c]) < mx/127*(1-1e-6) {
			t.Errorf("column %d: scale %g below max/127 = %g", c, scale[c], mx/127)
		}
	}
}
