//go:build cgo

package onednn

import (
	"math"
	"math/rand"
	"testing"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
)

// eachPath runs fn on the AVX2 kernels and on the scalar ones.
func eachPath(t *testing.T, fn func(t *testing.T)) {
	t.Run("avx2", fn)
	setSIMD(false)
	defer setSIMD(true)
	t.Run("scalar", fn)
}

// The activations agree with bert.Activation (float64 math) to a few float32
// ulps of the result, over the whole range including the tails and the tail
// lengths of the vector loops.
func TestKernelActivations(t *testing.T) {
	eachPath(t, func(t *testing.T) {
		for code, act := range []bert.Activation{bert.GELUExact, bert.GELUTanh, bert.GELUCrude} {
			var x []float32
			for v := -12.0; v <= 12; v += 0.0137 {
				x = append(x, float32(v))
			}
			x = append(x, 0, float32(math.Copysign(0, -1)), 1e-30, -1e-30, 40, -40, 1e6, -1e6)
			got := append([]float32(nil), x...)
			kernelAct(got, code)
			for i, v := range x {
				want := act.Apply(float64(v))
				if d := math.Abs(float64(got[i]) - want); d > 4e-7*math.Max(1, math.Abs(want)) || math.IsNaN(float64(got[i])) {
					t.Fatalf("%s(%g) = %g, want %g (off by %.3g)", act, v, got[i], want, d)
				}
			}
		}
	})
}

// bfloat16 rounding is round-to-nearest-even, as the artifact writer's.
func TestKernelToBF16(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	x := []float32{0, 1, -1, 1.00390625, 1.01171875, 3.4e38, float32(math.Inf(1)), float32(math.Inf(-1)), 1e-40}
	for range 1000 {
		x = append(x, math.Float32frombits(rng.Uint32()))
	}
	eachPath(t, func(t *testing.T) {
		got := kernelToBF16(x)
		for i, v := range x {
			want := artifact.ToBF16(v)
			if math.IsNaN(float64(v)) {
				if b := artifact.FromBF16(got[i]); !math.IsNaN(float64(b)) {
					t.Fatalf("NaN %08x became %04x", math.Float32bits(v), got[i])
				}
				continue
			}
			if got[i] != want {
				t.Fatalf("%g (%08x): %04x, want %04x", v, math.Float32bits(v), got[i], want)
			}
		}
	})
}

// Per-token quantization spans the row's range with 0 inside, keeps every
// value within half a step, and is exact at the ends.
func TestKernelQuantize(t *testing.T) {
	rng := rand.New(rand.NewSource(2))
	rows := [][]float32{{0, 0, 0}, {1, 2, 3}, {-3, -1}, {5}, {-0.17, 2, 0.5, -0.1, 7, 3, 0, 1, 2}}
	for _, n := range []int{1, 7, 8, 9, 1024, 4096} {
		r := make([]float32, n)
		for i := range r {
			r[i] = float32(rng.NormFloat64())
		}
		rows = append(rows, r)
	}
	eachPath(t, func(t *testing.T) {
		for _, x := range rows {
			q, s, z := kernelQuantize(x)
			for i, v := range x {
				back := float32(int32(q[i])-z) * s
				if d := math.Abs(float64(back - v)); d > 0.5001*float64(s) {
					t.Fatalf("row %v: %g came back as %g (scale %g, zero %d)", x, v, back, s, z)
				}
			}
			if z < 0 || z > 255 {
				t.Fatalf("zero point %d", z)
			}
		}
	})
}
