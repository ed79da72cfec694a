package bert

import (
	"fmt"
	"math"
	"runtime"
	"sync"
)

// Forward is the reference evaluation of one unpadded sequence: the checkpoint's
// own weights, unfused, in float64 arithmetic. It is an oracle for tests and for
// the compiler's verification, not a fast path. It returns the logits.
func (w *Weights) Forward(ids, types []int32) ([]float64, error) {
	c := w.Config
	n, H := len(ids), c.HiddenSize
	if n == 0 || n > c.MaxPositions || len(types) != n {
		return nil, fmt.Errorf("reference forward: %d ids and %d types (max %d)", n, len(types), c.MaxPositions)
	}
	x := make([]float64, n*H)
	for t := 0; t < n; t++ {
		id, ty := int(ids[t]), int(types[t])
		if id < 0 || id >= c.VocabSize || ty < 0 || ty >= c.TypeVocabSize {
			return nil, fmt.Errorf("reference forward: token %d: id %d or type %d out of range", t, id, ty)
		}
		row := x[t*H : (t+1)*H]
		for i := range row {
			row[i] = float64(w.Word[id*H+i]) + float64(w.Position[t*H+i]) + float64(w.TokenType[ty*H+i])
		}
		layerNorm(row, w.EmbNorm, c.LayerNormEps)
	}
	d := c.HeadDim()
	scale := 1 / math.Sqrt(float64(d))
	for _, l := range w.Layers {
		q, k, v := linear(x, n, l.Query), linear(x, n, l.Key), linear(x, n, l.Value)
		ctx := make([]float64, n*H)
		parallelFor(c.NumHeads*n, func(job int) {
			h, i := job/n, job%n
			scores := make([]float64, n)
			maxv := math.Inf(-1)
			for j := 0; j < n; j++ {
				var dot float64
				for t := 0; t < d; t++ {
					dot += q[i*H+h*d+t] * k[j*H+h*d+t]
				}
				scores[j] = dot * scale
				maxv = math.Max(maxv, scores[j])
			}
			var sum float64
			for j := range scores {
				scores[j] = math.Exp(scores[j] - maxv)
				sum += scores[j]
			}
			for j := 0; j < n; j++ {
				p := scores[j] / sum
				for t := 0; t < d; t++ {
					ctx[i*H+h*d+t] += p * v[j*H+h*d+t]
				}
			}
		})
		a := linear(ctx, n, l.AttnOut)
		for i := range x {
			x[i] += a[i]
		}
		for t := 0; t < n; t++ {
			layerNorm(x[t*H:(t+1)*H], l.AttnNorm, c.LayerNormEps)
		}
		f := linear(x, n, l.FFNIn)
		for i := range f {
			f[i] = c.Activation.Apply(f[i])
		}
		o := linear(f, n, l.FFNOut)
		for i := range x {
			x[i] += o[i]
		}
		for t := 0; t < n; t++ {
			layerNorm(x[t*H:(t+1)*H], l.FFNNorm, c.LayerNormEps)
		}
	}
	pooled := linear(x[:H], 1, w.Pooler)
	for i := range pooled {
		pooled[i] = math.Tanh(pooled[i])
	}
	return linear(pooled, 1, w.Classifier), nil
}

// linear computes x[n][In]·Wᵀ + b for a PyTorch-layout weight.
func linear(x []float64, n int, l Linear) []float64 {
	out := make([]float64, n*l.Out)
	parallelFor(l.Out, func(o int) {
		wr := l.Weight[o*l.In : (o+1)*l.In]
		for t := 0; t < n; t++ {
			xr := x[t*l.In : (t+1)*l.In]
			acc := float64(l.Bias[o])
			for i, wv := range wr {
				acc += xr[i] * float64(wv)
			}
			out[t*l.Out+o] = acc
		}
	})
	return out
}

func layerNorm(x []float64, p LayerNorm, eps float64) {
	var mean, sq float64
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	for _, v := range x {
		sq += (v - mean) * (v - mean)
	}
	inv := 1 / math.Sqrt(sq/float64(len(x))+eps)
	for i, v := range x {
		x[i] = (v-mean)*inv*float64(p.Gamma[i]) + float64(p.Beta[i])
	}
}

func parallelFor(n int, fn func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	chunk := (n + workers - 1) / workers
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		lo, hi := w*chunk, min((w+1)*chunk, n)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := lo; i < hi; i++ {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
