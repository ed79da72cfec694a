package artifact

import "math"

// QuantizeS8 quantizes a row-major [k][n] weight the WeightsS8PairSafe way.
// Per output column the scale is the smallest that keeps every |q| ≤ 127
// and every adjacent pair's |q₂ⱼ| + |q₂ⱼ₊₁| ≤ 128 before rounding; values
// round half to even, and where two roundings up push a pair to 129 the one
// that was rounded further goes back one step.
func QuantizeS8(w []float32, k, n int) (q []int8, scale []float32) {
	scale = make([]float32, n)
	q = make([]int8, k*n)
	at := func(r, c int) float64 { return float64(w[r*n+c]) }
	for c := 0; c < n; c++ {
		var mx, pair float64
		for r := 0; r < k; r++ {
			mx = math.Max(mx, math.Abs(at(r, c)))
			if r%2 == 1 {
				pair = math.Max(pair, math.Abs(at(r-1, c))+math.Abs(at(r, c)))
			}
		}
		s := math.Max(mx/127, pair/128)
		if s == 0 {
			s = 1
		}
		scale[c] = float32(s)
		s = float64(scale[c]) // quantize with the scale as stored
		for r := 0; r < k; r++ {
			q[r*n+c] = int8(max(-127, min(127, math.RoundToEven(at(r, c)/s))))
		}
		for r := 1; r < k; r += 2 {
			a, b := &q[(r-1)*n+c], &q[r*n+c]
			if abs8(*a)+abs8(*b) <= 128 {
				continue
			}
			// Both rounded away from zero; undo the larger rounding.
			ea := math.Abs(float64(*a)) - math.Abs(at(r-1, c)/s)
			eb := math.Abs(float64(*b)) - math.Abs(at(r, c)/s)
			if ea >= eb {
				*a -= sign8(*a)
			} else {
				*b -= sign8(*b)
			}
		}
	}
	return q, scale
}

func abs8(v int8) int {
	if v < 0 {
		return -int(v)
	}
	return int(v)
}

func sign8(v int8) int8 {
	if v < 0 {
		return -1
	}
	return 1
}

// DequantizeS8 is QuantizeS8's inverse: w[k][n] = q[k][n] · scale[n].
func DequantizeS8(q []int8, scale []float32, k, n int) []float32 {
	w := make([]float32, k*n)
	for r := 0; r < k; r++ {
		for c := 0; c < n; c++ {
			w[r*n+c] = float32(q[r*n+c]) * scale[c]
		}
	}
	return w
}
