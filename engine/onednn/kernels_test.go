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

// gemm.h's u8·s8 kernel equals the exact product on every edge: rows not a
// multiple of its 6-row tile, columns not a multiple of 16, K not a multiple
// of 4 or above its 1024-byte K block (the blocks add up), and the extreme
// pair-safe weights against u8 255.
func TestKernelGEMMU8S8(t *testing.T) {
	if !kernelAVX2() {
		t.Skip("gemm.h's kernel needs AVX2; this CPU has none (the engine uses oneDNN's there)")
	}
	rng := rand.New(rand.NewSource(9))
	extremes := [][2]int8{{-128, 0}, {0, -128}, {64, 64}, {127, 1}, {-64, -64}, {1, -127}}
	for _, sh := range [][3]int{{1, 4, 16}, {5, 6, 17}, {6, 7, 15}, {7, 64, 1}, {13, 2050, 40}, {12, 1024, 48}, {19, 3000, 33}} {
		M, K, N := sh[0], sh[1], sh[2]
		a := make([]uint8, M*K)
		for i := range a {
			a[i] = uint8(rng.Intn(256))
			if i%7 == 0 {
				a[i] = 255
			}
		}
		w := make([]int8, K*N)
		for k := 0; k < K; k += 2 {
			for n := 0; n < N; n++ {
				p := [2]int8{int8(rng.Intn(129) - 64), int8(rng.Intn(129) - 64)}
				if rng.Intn(4) == 0 {
					p = extremes[rng.Intn(len(extremes))]
				}
				w[k*N+n] = p[0]
				if k+1 < K {
					w[(k+1)*N+n] = p[1]
				}
			}
		}
		got := gemmU8S8(a, w, M, K, N)
		for m := 0; m < M; m++ {
			for n := 0; n < N; n++ {
				var want int32
				for k := 0; k < K; k++ {
					want += int32(a[m*K+k]) * int32(w[k*N+n])
				}
				if got[m*N+n] != want {
					t.Fatalf("M %d K %d N %d: C[%d][%d] = %d, want %d", M, K, N, m, n, got[m*N+n], want)
				}
			}
		}
	}
}
