// Package gocpu is the plain-Go engine backend ("go"): slow, portable, and
// independent of oneDNN, so it runs in CGO_ENABLED=0 builds and serves as a
// second implementation of the compiled layout for cross-checks. Arithmetic is
// float32 storage with float64 accumulation in every reduction; int8
// artifacts run the engines' int8 arithmetic exactly: each matmul input row
// quantized to u8 over its own range (artifact.ActivationsU8PerToken), exact
// integer dot products with the s8 weights, then dequantized.
package gocpu

import (
	"math"
	"runtime"
	"sync"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

func init() { engine.Register(backend{}) }

type backend struct{}

func (backend) Name() string     { return "go" }
func (backend) Available() error { return nil }
func (backend) Load(f *artifact.File, _ engine.Options) (engine.Model, error) {
	w, err := engine.ReadWeights(f)
	if err != nil {
		return nil, err
	}
	m := &model{w: w, mats: map[*engine.Matrix][]float32{}}
	// Widen bf16 weights once; the arithmetic is float32 either way. Int8
	// weights stay int8.
	for l := range w.Layers {
		lw := &w.Layers[l]
		for _, mx := range []*engine.Matrix{&lw.QKV, &lw.AttnOut, &lw.FFNIn, &lw.FFNOut} {
			if mx.I8 == nil {
				m.mats[mx] = mx.Widen()
			}
		}
	}
	return m, nil
}

type model struct {
	w    *engine.Weights
	mats map[*engine.Matrix][]float32
}

// linear computes out = x·W + bias for rows rows of x.
func (m *model) linear(mx *engine.Matrix, x, bias, out []float32, rows int) {
	if mx.I8 != nil {
		matmulInt8(x, mx, bias, out, rows)
		return
	}
	matmul(x, m.mats[mx], bias, out, rows, mx.K, mx.N)
}

func (m *model) Spec() engine.Spec { return m.w.Spec }
func (m *model) Backend() string   { return "go" }
func (m *model) Close() error      { return nil }

func (m *model) NewRunner(int) (engine.Runner, error) {
	c, s := m.w.Config, m.w.Spec
	n := s.Batch * s.Seq
	return &runner{m: m,
		x:   make([]float32, n*c.HiddenSize),
		qkv: make([]float32, n*3*c.HiddenSize),
		ctx: make([]float32, n*c.HiddenSize),
		tmp: make([]float32, n*c.HiddenSize),
		ffn: make([]float32, n*c.IntermediateSize),
	}, nil
}

type runner struct {
	m                     *model
	x, qkv, ctx, tmp, ffn []float32
}

func (r *runner) Close() error { return nil }

func (r *runner) Run(in engine.Input, logits []float32) error {
	w := r.m.w
	c, s := w.Config, w.Spec
	if err := engine.Check(s, c.VocabSize, c.TypeVocabSize, in); err != nil {
		return err
	}
	if err := engine.CheckLogits(s, in, logits); err != nil {
		return err
	}
	H, I, n := c.HiddenSize, c.IntermediateSize, in.Tokens()
	x, qkv, ctx, tmp, ffn := r.x[:n*H], r.qkv[:n*3*H], r.ctx[:n*H], r.tmp[:n*H], r.ffn[:n*I]
	w.Embed(in, x)
	for l := range w.Layers {
		lw := &w.Layers[l]
		r.m.linear(&lw.QKV, x, lw.QKVBias, qkv, n)
		r.attention(in, qkv, ctx)
		r.m.linear(&lw.AttnOut, ctx, lw.AttnOutBias, tmp, n)
		addNorm(x, tmp, lw.AttnNormGamma, lw.AttnNormBeta, H, c.LayerNormEps)
		r.m.linear(&lw.FFNIn, x, lw.FFNInBias, ffn, n)
		gelu(ffn, w.Activation)
		r.m.linear(&lw.FFNOut, ffn, lw.FFNOutBias, tmp, n)
		addNorm(x, tmp, lw.FFNNormGamma, lw.FFNNormBeta, H, c.LayerNormEps)
	}
	w.Classify(in, x, logits)
	return nil
}

// attention computes softmax(QKᵀ + mask)·V per sequence and head, over the
// sequence's own rows only; the 1/√d scale is already folded into Q by the
// compiler. Masked keys get weight exactly 0, as Hugging Face's additive
// float32-min mask gives them.
func (r *runner) attention(in engine.Input, qkv, ctx []float32) {
	w := r.m.w
	H, nh := w.Config.HiddenSize, w.Config.NumHeads
	d := H / nh
	seqs := in.Seqs(w.Spec)
	starts := make([]int, seqs+1)
	for b := 0; b < seqs; b++ {
		starts[b+1] = starts[b] + in.Len(w.Spec, b)
	}
	parallel(seqs*nh, func(job int) {
		b, h := job/nh, job%nh
		lo, hi := starts[b], starts[b+1]
		scores := make([]float64, hi-lo)
		acc := make([]float64, d)
		for i := lo; i < hi; i++ {
			q := qkv[i*3*H+h*d:][:d]
			maxv := math.Inf(-1)
			for j := lo; j < hi; j++ {
				if in.AttentionMask != nil && in.AttentionMask[j] == 0 {
					scores[j-lo] = math.Inf(-1)
					continue
				}
				k := qkv[j*3*H+H+h*d:][:d]
				var dot float64
				for t := range q {
					dot += float64(q[t]) * float64(k[t])
				}
				scores[j-lo] = dot
				maxv = math.Max(maxv, dot)
			}
			var sum float64
			for j := range scores {
				if math.IsInf(scores[j], -1) {
					scores[j] = 0
					continue
				}
				scores[j] = math.Exp(scores[j] - maxv)
				sum += scores[j]
			}
			clear(acc)
			for j := lo; j < hi; j++ {
				if scores[j-lo] == 0 {
					continue
				}
				p := scores[j-lo] / sum
				v := qkv[j*3*H+2*H+h*d:][:d]
				for t := range acc {
					acc[t] += p * float64(v[t])
				}
			}
			out := ctx[i*H+h*d:][:d]
			for t := range out {
				out[t] = float32(acc[t])
			}
		}
	})
}

// matmul computes out[m][n] = x[m][k]·wt[k][n] + bias[n].
func matmul(x, wt, bias, out []float32, m, k, n int) {
	parallel(m, func(i int) {
		acc := make([]float64, n)
		for j := range acc {
			acc[j] = float64(bias[j])
		}
		row := x[i*k:][:k]
		for t, xv := range row {
			if xv == 0 {
				continue
			}
			xf := float64(xv)
			wr := wt[t*n:][:n]
			for j, wv := range wr {
				acc[j] += xf * float64(wv)
			}
		}
		o := out[i*n:][:n]
		for j := range o {
			o[j] = float32(acc[j])
		}
	})
}

// matmulInt8 computes out[m][n] = deq(q(x[m])·W[n]) + bias[n]: x's row
// quantized to u8 over its own range, exact integer dot products with the s8
// weight, dequantized with the row's and the column's scales.
func matmulInt8(x []float32, w *engine.Matrix, bias, out []float32, m int) {
	k, n := w.K, w.N
	parallel(m, func(i int) {
		q, s, z := quantizeRow(x[i*k:][:k])
		acc := make([]int32, n)
		for t, qv := range q {
			if qv -= z; qv == 0 {
				continue
			}
			wr := w.I8[t*n:][:n]
			for j, wv := range wr {
				acc[j] += qv * int32(wv)
			}
		}
		o := out[i*n:][:n]
		for j := range o {
			o[j] = float32(acc[j])*(s*w.Scale[j]) + bias[j]
		}
	})
}

// quantizeRow is the engines' per-token quantization of one row (see
// artifact.ActivationsU8PerToken): u8 values, scale and zero point, in
// float32 arithmetic rounding half to even.
func quantizeRow(x []float32) (q []int32, scale float32, zero int32) {
	var lo, hi float32
	for _, v := range x {
		lo, hi = min(lo, v), max(hi, v)
	}
	q = make([]int32, len(x))
	if hi == lo {
		return q, 1, 0
	}
	inv := 255 / (hi - lo)
	scale = (hi - lo) / 255
	round := func(v float32) float32 { return float32(math.RoundToEven(float64(v))) }
	zf := min(max(round(-lo*inv), 0), 255)
	for i, v := range x {
		q[i] = int32(min(max(round(v*inv)+zf, 0), 255))
	}
	return q, scale, int32(zf)
}

func addNorm(x, delta, gamma, beta []float32, h int, eps float64) {
	for i := range x {
		x[i] += delta[i]
	}
	for r := 0; r < len(x)/h; r++ {
		engine.LayerNorm(x[r*h:(r+1)*h], gamma, beta, eps)
	}
}

func gelu(x []float32, a bert.Activation) {
	for i, v := range x {
		x[i] = float32(a.Apply(float64(v)))
	}
}

// parallel runs fn(0..n-1) over GOMAXPROCS goroutines.
func parallel(n int, fn func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := 0; i < n; i++ {
		next <- i
	}
	close(next)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				fn(i)
			}
		}()
	}
	wg.Wait()
}
