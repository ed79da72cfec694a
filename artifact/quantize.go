package artifact

import "math"

// QuantizeS8 quantizes a row-major [k][n] weight the WeightsS8PerChannel way:
// for each output column n, scale[n] = max_k |w[k][n]| / 127 (1 for an
// all-zero column) and q[k][n] = round-half-even(w[k][n] / scale[n]), so that
// w ≈ q · scale within half a step.
func QuantizeS8(w []float32, k, n int) (q []int8, scale []float32) {
	scale = make([]float32, n)
	for c := 0; c < n; c++ {
		var mx float64
		for r := 0; r < k; r++ {
			mx = math.Max(mx, math.Abs(float64(w[r*n+c])))
		}
		scale[c] = 1
		if mx > 0 {
			scale[c] = float32(mx / 127)
		}
	}
	q = make([]int8, k*n)
	for r := 0; r < k; r++ {
		for c := 0; c < n; c++ {
			v := math.RoundToEven(float64(w[r*n+c]) / float64(scale[c]))
			q[r*n+c] = int8(max(-127, min(127, v)))
		}
	}
	return q, scale
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
