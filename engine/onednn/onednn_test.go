//go:build cgo

package onednn

import (
	"errors"
	"fmt"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

// smallConfig is a toy BERT that still has every part of the real one.
func smallConfig(act bert.Activation) bert.Config {
	return bert.Config{
		VocabSize: 100, HiddenSize: 64, NumLayers: 2, NumHeads: 4, IntermediateSize: 256,
		MaxPositions: 64, TypeVocabSize: 2, NumLabels: 3, Activation: act, LayerNormEps: 1e-12,
	}
}

// writeArtifact writes a compiled-layout artifact with random weights scaled so
// that activations stay O(1) (and attention is far from uniform), Q columns
// pre-scaled by 1/√d like the compiler's.
func writeArtifact(tb testing.TB, path string, c bert.Config, batch, seq int, prec artifact.Precision, seed int64) {
	tb.Helper()
	rng := rand.New(rand.NewSource(seed))
	uni := func(n int, a float64) []float32 {
		out := make([]float32, n)
		for i := range out {
			out[i] = float32((2*rng.Float64() - 1) * a)
		}
		return out
	}
	around := func(n int, center, a float64) []float32 {
		out := uni(n, a)
		for i := range out {
			out[i] += float32(center)
		}
		return out
	}
	wr, err := artifact.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	H, I, D := c.HiddenSize, c.IntermediateSize, c.HeadDim()
	wr.F32(artifact.WordEmbeddings, []int{c.VocabSize, H}, uni(c.VocabSize*H, 1))
	wr.F32(artifact.PositionEmbeddings, []int{c.MaxPositions, H}, uni(c.MaxPositions*H, 0.5))
	wr.F32(artifact.TokenTypeEmbeddings, []int{c.TypeVocabSize, H}, uni(c.TypeVocabSize*H, 0.5))
	wr.F32(artifact.EmbNormGamma, []int{H}, around(H, 1, 0.2))
	wr.F32(artifact.EmbNormBeta, []int{H}, uni(H, 0.2))
	for l := 0; l < c.NumLayers; l++ {
		n := func(p string) string { return artifact.LayerTensor(l, p) }
		wrMat := func(p string, k, nn int, gain float64) {
			data := uni(k*nn, gain*math.Sqrt(3/float64(k)))
			if p == artifact.QKVWeight {
				for r := 0; r < k; r++ {
					for j := 0; j < H; j++ {
						data[r*nn+j] *= float32(2 / math.Sqrt(float64(D)))
					}
				}
			}
			if prec == artifact.BF16 {
				wr.BF16(n(p), []int{k, nn}, data)
			} else {
				wr.F32(n(p), []int{k, nn}, data)
			}
		}
		wrMat(artifact.QKVWeight, H, 3*H, 1)
		wr.F32(n(artifact.QKVBias), []int{3 * H}, uni(3*H, 0.1))
		wrMat(artifact.AttnOutWeight, H, H, 1)
		wr.F32(n(artifact.AttnOutBias), []int{H}, uni(H, 0.1))
		wr.F32(n(artifact.AttnNormGamma), []int{H}, around(H, 1, 0.2))
		wr.F32(n(artifact.AttnNormBeta), []int{H}, uni(H, 0.2))
		wrMat(artifact.FFNInWeight, H, I, 1.5)
		wr.F32(n(artifact.FFNInBias), []int{I}, uni(I, 0.3))
		wrMat(artifact.FFNOutWeight, I, H, 1)
		wr.F32(n(artifact.FFNOutBias), []int{H}, uni(H, 0.1))
		wr.F32(n(artifact.FFNNormGamma), []int{H}, around(H, 1, 0.2))
		wr.F32(n(artifact.FFNNormBeta), []int{H}, uni(H, 0.2))
	}
	wr.F32(artifact.PoolerWeight, []int{H, H}, uni(H*H, 2*math.Sqrt(3/float64(H))))
	wr.F32(artifact.PoolerBias, []int{H}, uni(H, 0.2))
	wr.F32(artifact.ClassifierWeight, []int{H, c.NumLabels}, uni(H*c.NumLabels, math.Sqrt(3/float64(H))))
	wr.F32(artifact.ClassifierBias, []int{c.NumLabels}, uni(c.NumLabels, 0.1))
	if err := wr.Close(artifact.Header{Model: c, Batch: batch, Seq: seq, Precision: prec,
		Activation: c.Activation, Synthetic: true, Compiler: "engine/onednn test"}); err != nil {
		tb.Fatal(err)
	}
}

// randomInput makes a batch with sequences of varied length (padding at the
// end), two segments each, and, if holes, some padding inside sequences too.
func randomInput(rng *rand.Rand, c bert.Config, batch, seq int, holes bool) engine.Input {
	n := batch * seq
	in := engine.Input{InputIDs: make([]int32, n), TokenTypeIDs: make([]int32, n), AttentionMask: make([]int32, n)}
	for b := 0; b < batch; b++ {
		length := seq
		if b > 0 {
			length = 1 + rng.Intn(seq)
		}
		for s := 0; s < seq; s++ {
			i := b*seq + s
			if s >= length {
				in.InputIDs[i] = int32(c.PadTokenID)
				continue
			}
			in.InputIDs[i] = int32(rng.Intn(c.VocabSize))
			if s >= length/2 {
				in.TokenTypeIDs[i] = 1
			}
			in.AttentionMask[i] = 1
			if holes && s > 0 && rng.Intn(5) == 0 {
				in.AttentionMask[i] = 0
			}
		}
	}
	return in
}

// reference is a float64 forward over the same compiled weights. With
// emulateBF16 it rounds to bfloat16 exactly where the bf16 engine hands a
// matmul bf16 data (hidden state, Q/K/V, probabilities, context, GELU output),
// so that only accumulation order separates the two. A sequence without any
// real token attends uniformly, as float32 Hugging Face does.
func reference(w *engine.Weights, in engine.Input, emulateBF16 bool) []float64 {
	c, s := w.Config, w.Spec
	B, S, H, NH, I := s.Batch, s.Seq, c.HiddenSize, c.NumHeads, c.IntermediateSize
	D, T := H/NH, B*S
	rb := func(v []float64) []float64 {
		out := make([]float64, len(v))
		for i, x := range v {
			if emulateBF16 {
				out[i] = float64(artifact.FromBF16(artifact.ToBF16(float32(x))))
			} else {
				out[i] = x
			}
		}
		return out
	}
	widen := func(m engine.Matrix) []float64 {
		out := make([]float64, m.K*m.N)
		for i := range out {
			if m.BF16 != nil {
				out[i] = float64(artifact.FromBF16(m.BF16[i]))
			} else {
				out[i] = float64(m.F32[i])
			}
		}
		return out
	}
	ln := func(row []float64, g, b []float32) {
		var mean, sq float64
		for _, v := range row {
			mean += v
		}
		mean /= float64(len(row))
		for _, v := range row {
			sq += (v - mean) * (v - mean)
		}
		inv := 1 / math.Sqrt(sq/float64(len(row))+c.LayerNormEps)
		for i, v := range row {
			row[i] = (v-mean)*inv*float64(g[i]) + float64(b[i])
		}
	}
	matmul := func(a []float64, M, K int, wt []float64, N int, bias []float32) []float64 {
		out := make([]float64, M*N)
		for m := 0; m < M; m++ {
			o := out[m*N : (m+1)*N]
			for j := range o {
				o[j] = float64(bias[j])
			}
			for k := 0; k < K; k++ {
				av := a[m*K+k]
				row := wt[k*N : (k+1)*N]
				for j, wv := range row {
					o[j] += av * wv
				}
			}
		}
		return out
	}
	x := make([]float64, T*H)
	for t := 0; t < T; t++ {
		row := x[t*H : (t+1)*H]
		for i := range row {
			row[i] = float64(w.Word[int(in.InputIDs[t])*H+i]) + float64(w.Position[(t%S)*H+i]) +
				float64(w.Type[int(in.TokenTypeIDs[t])*H+i])
		}
		ln(row, w.EmbGamma, w.EmbBeta)
	}
	for l := range w.Layers {
		lw := &w.Layers[l]
		qkv := rb(matmul(rb(x), T, H, widen(lw.QKV), 3*H, lw.QKVBias))
		ctx := make([]float64, T*H)
		p := make([]float64, S)
		for b := 0; b < B; b++ {
			any := false
			for j := 0; j < S; j++ {
				any = any || in.AttentionMask[b*S+j] != 0
			}
			for h := 0; h < NH; h++ {
				for i := 0; i < S; i++ {
					q := qkv[(b*S+i)*3*H+h*D:][:D]
					mx := math.Inf(-1)
					for j := 0; j < S; j++ {
						p[j] = math.Inf(-1)
						if !any || in.AttentionMask[b*S+j] != 0 {
							k := qkv[(b*S+j)*3*H+H+h*D:][:D]
							var dot float64
							for e := range q {
								dot += q[e] * k[e]
							}
							if !any {
								dot = 0 // float32 score + finfo.min is finfo.min for every key
							}
							p[j] = dot
						}
						mx = math.Max(mx, p[j])
					}
					var sum float64
					for j := range p {
						p[j] = math.Exp(p[j] - mx)
						sum += p[j]
					}
					for j := range p {
						p[j] /= sum
					}
					p = rb(p)
					out := ctx[(b*S+i)*H+h*D:][:D]
					for j := 0; j < S; j++ {
						v := qkv[(b*S+j)*3*H+2*H+h*D:][:D]
						for e := range out {
							out[e] += p[j] * v[e]
						}
					}
				}
			}
		}
		ao := matmul(rb(ctx), T, H, widen(lw.AttnOut), H, lw.AttnOutBias)
		for i := range x {
			x[i] += ao[i]
		}
		for t := 0; t < T; t++ {
			ln(x[t*H:(t+1)*H], lw.AttnNormGamma, lw.AttnNormBeta)
		}
		hid := matmul(rb(x), T, H, widen(lw.FFNIn), I, lw.FFNInBias)
		for i, v := range hid {
			hid[i] = w.Activation.Apply(v)
		}
		fo := matmul(rb(hid), T, I, widen(lw.FFNOut), H, lw.FFNOutBias)
		for i := range x {
			x[i] += fo[i]
		}
		for t := 0; t < T; t++ {
			ln(x[t*H:(t+1)*H], lw.FFNNormGamma, lw.FFNNormBeta)
		}
	}
	L := s.Labels
	logits := make([]float64, B*L)
	pooled := make([]float64, H)
	for b := 0; b < B; b++ {
		cls := x[b*S*H:][:H]
		for j := range pooled {
			acc := float64(w.PoolerB[j])
			for k, v := range cls {
				acc += v * float64(w.PoolerW[k*H+j])
			}
			pooled[j] = math.Tanh(acc)
		}
		for l := 0; l < L; l++ {
			acc := float64(w.ClassifierB[l])
			for k, v := range pooled {
				acc += v * float64(w.ClassifierW[k*L+l])
			}
			logits[b*L+l] = acc
		}
	}
	return logits
}

// widened reports whether the model runs its bf16 weights as f32 because the
// CPU has no bf16 matmuls.
func widened(fx *fixture) bool {
	return strings.Contains(fx.model.(*Model).Describe(), "widened to f32")
}

type fixture struct {
	f      *artifact.File
	w      *engine.Weights
	model  engine.Model
	runner engine.Runner
}

func load(t testing.TB, c bert.Config, batch, seq int, prec artifact.Precision, seed int64) *fixture {
	t.Helper()
	path := filepath.Join(t.TempDir(), "model.bqa")
	writeArtifact(t, path, c, batch, seq, prec, seed)
	f, err := artifact.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	be, err := engine.Get(Name)
	if err != nil {
		t.Fatal(err)
	}
	m, err := be.Load(f, engine.Options{})
	if err != nil {
		f.Close()
		t.Fatal(err)
	}
	w, err := engine.ReadWeights(f)
	if err != nil {
		t.Fatal(err)
	}
	r, err := m.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	fx := &fixture{f: f, w: w, model: m, runner: r}
	t.Cleanup(func() {
		r.Close()
		m.Close()
		f.Close()
	})
	return fx
}

func (fx *fixture) run(t testing.TB, in engine.Input) []float32 {
	t.Helper()
	s := fx.model.Spec()
	logits := make([]float32, s.Batch*s.Labels)
	if err := fx.runner.Run(in, logits); err != nil {
		t.Fatal(err)
	}
	return logits
}

func maxDiff(got []float32, want []float64) float64 {
	var d float64
	for i := range got {
		d = math.Max(d, math.Abs(float64(got[i])-want[i]))
	}
	return d
}

var activations = []bert.Activation{bert.GELUExact, bert.GELUTanh, bert.GELUCrude}

func TestRegistered(t *testing.T) {
	be, err := engine.Get(Name)
	if err != nil {
		t.Fatal(err)
	}
	if be.Name() != Name || be.Available() != nil {
		t.Fatalf("backend %q available: %v", be.Name(), be.Available())
	}
}

// An fp32 artifact must agree with the float64 reference to 1e-4 on logits of
// magnitude ~1: only float32 rounding separates them.
func TestFP32MatchesFloat64(t *testing.T) {
	for i, act := range activations {
		t.Run(string(act), func(t *testing.T) {
			c := smallConfig(act)
			fx := load(t, c, 3, 24, artifact.FP32, int64(10+i))
			rng := rand.New(rand.NewSource(int64(i)))
			for _, holes := range []bool{false, true} {
				in := randomInput(rng, c, 3, 24, holes)
				got := fx.run(t, in)
				want := reference(fx.w, in, false)
				d := maxDiff(got, want)
				t.Logf("holes=%v max |Δlogit| = %.2g (logits %v)", holes, d, got)
				if d > 1e-4 {
					t.Errorf("holes=%v: max |Δlogit| = %g > 1e-4\n got %v\nwant %v", holes, d, got, want)
				}
			}
		})
	}
}

// A bf16 artifact is held to two bounds. Against a reference that rounds to
// bfloat16 at the same points (hidden state, Q/K/V, probabilities, context,
// GELU output) the engine agrees to ~4e-7 unless some intermediate lands on the
// other side of a bf16 rounding boundary than its float64 twin; each such flip
// moves one element by one bf16 ulp (2^-8 relative), and on this toy model
// (hidden 64, where one element weighs a lot) we observe up to 6e-3, hence
// 0.01. Against the exact float64 forward every matmul input also carries
// bf16's 2^-9 relative rounding; through 2 layers of ~7 rounded operands that
// is ~1% of an O(1) logit (observed ≤ 0.015), hence 0.05. A wiring mistake
// (head order, mask, bias, residual) costs O(0.1–1).
func TestBF16MatchesReference(t *testing.T) {
	for i, act := range activations {
		t.Run(string(act), func(t *testing.T) {
			c := smallConfig(act)
			fx := load(t, c, 4, 32, artifact.BF16, int64(20+i))
			rng := rand.New(rand.NewSource(int64(i)))
			for _, holes := range []bool{false, true} {
				in := randomInput(rng, c, 4, 32, holes)
				got := fx.run(t, in)
				exact := maxDiff(got, reference(fx.w, in, false))
				if widened(fx) {
					// No bf16 matmuls on this CPU: bf16 weights run widened
					// to f32, so only f32 rounding separates the two.
					t.Logf("holes=%v (bf16 weights widened to f32) max |Δlogit| vs float64 %.2g", holes, exact)
					if exact > 1e-4 {
						t.Errorf("holes=%v: %g off the float64 reference, want ≤ 1e-4", holes, exact)
					}
					continue
				}
				emu := maxDiff(got, reference(fx.w, in, true))
				t.Logf("holes=%v max |Δlogit| vs bf16-emulating reference %.2g, vs float64 %.2g", holes, emu, exact)
				if emu > 0.01 {
					t.Errorf("holes=%v: %g off the bf16-emulating reference, want ≤ 0.01", holes, emu)
				}
				if exact > 0.05 {
					t.Errorf("holes=%v: %g off the float64 reference, want ≤ 0.05", holes, exact)
				}
			}
		})
	}
}

// The AVX-512 kernels and the portable scalar ones compute the same thing.
func TestScalarKernelsAgree(t *testing.T) {
	for _, prec := range []artifact.Precision{artifact.FP32, artifact.BF16} {
		t.Run(string(prec), func(t *testing.T) {
			c := smallConfig(bert.GELUExact)
			c.HiddenSize, c.NumHeads = 40, 2 // exercises the vector loops' tails
			fx := load(t, c, 2, 20, prec, 30)
			in := randomInput(rand.New(rand.NewSource(3)), c, 2, 20, true)
			simd := fx.run(t, in)
			setSIMD(false)
			scalar := fx.run(t, in)
			setSIMD(true)
			emulate := prec == artifact.BF16 && !widened(fx)
			want := reference(fx.w, in, emulate)
			tol := 1e-4
			if emulate {
				tol = 2e-3
			}
			for name, got := range map[string][]float32{"avx512": simd, "scalar": scalar} {
				if d := maxDiff(got, want); d > tol {
					t.Errorf("%s kernels: %g off the reference", name, d)
				}
			}
		})
	}
}

func TestAllPaddingSequence(t *testing.T) {
	c := smallConfig(bert.GELUExact)
	fx := load(t, c, 2, 16, artifact.FP32, 40)
	in := randomInput(rand.New(rand.NewSource(4)), c, 2, 16, false)
	for s := 0; s < 16; s++ {
		in.AttentionMask[16+s] = 0
	}
	got := fx.run(t, in)
	if d := maxDiff(got, reference(fx.w, in, false)); d > 1e-4 {
		t.Fatalf("%g off the reference", d)
	}
}

// Whatever sits at masked positions, the logits are the same bits: padding
// keys get probability exactly zero and padding queries are never read.
func TestPaddingContentIrrelevant(t *testing.T) {
	for _, prec := range []artifact.Precision{artifact.FP32, artifact.BF16} {
		t.Run(string(prec), func(t *testing.T) {
			c := smallConfig(bert.GELUExact)
			fx := load(t, c, 4, 32, prec, 45)
			rng := rand.New(rand.NewSource(9))
			in := randomInput(rng, c, 4, 32, true)
			want := fx.run(t, in)
			for i, m := range in.AttentionMask {
				if m == 0 {
					in.InputIDs[i] = int32(rng.Intn(c.VocabSize))
					in.TokenTypeIDs[i] = int32(rng.Intn(2))
				}
			}
			if got := fx.run(t, in); !bitsEqual(got, want) {
				t.Fatalf("changing padding tokens changed the logits: %v, was %v", got, want)
			}
		})
	}
}

// An artifact parsed from Go memory (not mapped) works the same; run under
// GOEXPERIMENT=cgocheck2 this checks the cgo pointer rules.
func TestLoadFromGoMemory(t *testing.T) {
	c := smallConfig(bert.GELUExact)
	fx := load(t, c, 2, 16, artifact.BF16, 47)
	in := randomInput(rand.New(rand.NewSource(10)), c, 2, 16, true)
	want := fx.run(t, in)
	b, err := os.ReadFile(fx.f.Path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := artifact.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	be, _ := engine.Get(Name)
	m, err := be.Load(f, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	r, err := m.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := make([]float32, len(want))
	if err := r.Run(in, got); err != nil {
		t.Fatal(err)
	}
	if !bitsEqual(got, want) {
		t.Fatalf("from memory %v, from the mapped file %v", got, want)
	}
}

func TestDeterministic(t *testing.T) {
	c := smallConfig(bert.GELUExact)
	fx := load(t, c, 4, 32, artifact.BF16, 50)
	in := randomInput(rand.New(rand.NewSource(5)), c, 4, 32, true)
	first := fx.run(t, in)
	for i := 0; i < 20; i++ {
		runtime.GC()
		if err := fx.runner.(Roofliner).RunGEMMs(i%2 == 0); err != nil { // scribbles over every buffer
			t.Fatal(err)
		}
		if got := fx.run(t, in); !bitsEqual(got, first) {
			t.Fatalf("run %d: %v, first run %v", i, got, first)
		}
	}
}

func bitsEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

func TestConcurrentRunnersAgree(t *testing.T) {
	c := smallConfig(bert.GELUTanh)
	fx := load(t, c, 4, 32, artifact.BF16, 60)
	in := randomInput(rand.New(rand.NewSource(6)), c, 4, 32, true)
	want := fx.run(t, in)
	cores := []int{0, 1}
	if runtime.NumCPU() < 2 {
		cores = []int{-1, -1}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(cores))
	for _, core := range cores {
		r, err := fx.model.NewRunner(core)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer r.Close()
			logits := make([]float32, len(want))
			for i := 0; i < 10; i++ {
				if err := r.Run(in, logits); err != nil {
					errs <- err
					return
				}
				if !bitsEqual(logits, want) {
					errs <- fmt.Errorf("core %d run %d: %v, want %v", core, i, logits, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestBadInput(t *testing.T) {
	c := smallConfig(bert.GELUExact)
	fx := load(t, c, 2, 8, artifact.FP32, 70)
	good := randomInput(rand.New(rand.NewSource(7)), c, 2, 8, false)
	logits := make([]float32, 2*c.NumLabels)
	clone := func() engine.Input {
		return engine.Input{
			InputIDs:      append([]int32(nil), good.InputIDs...),
			TokenTypeIDs:  append([]int32(nil), good.TokenTypeIDs...),
			AttentionMask: append([]int32(nil), good.AttentionMask...),
		}
	}
	cases := map[string]func(in *engine.Input){
		"short":       func(in *engine.Input) { in.InputIDs = in.InputIDs[:5] },
		"nil":         func(in *engine.Input) { *in = engine.Input{} },
		"id too big":  func(in *engine.Input) { in.InputIDs[3] = int32(c.VocabSize) },
		"negative id": func(in *engine.Input) { in.InputIDs[3] = -1 },
		"bad type":    func(in *engine.Input) { in.TokenTypeIDs[9] = 2 },
		"bad mask":    func(in *engine.Input) { in.AttentionMask[1] = 7 },
	}
	for name, mutate := range cases {
		in := clone()
		mutate(&in)
		if err := fx.runner.Run(in, logits); !errors.Is(err, engine.ErrInput) {
			t.Errorf("%s: got %v, want ErrInput", name, err)
		}
	}
	if err := fx.runner.Run(good, logits[:1]); !errors.Is(err, engine.ErrInput) {
		t.Errorf("short logits: got %v, want ErrInput", err)
	}
	if err := fx.runner.Run(good, logits); err != nil {
		t.Errorf("good input after bad ones: %v", err)
	}
}

func TestClose(t *testing.T) {
	c := smallConfig(bert.GELUExact)
	fx := load(t, c, 2, 8, artifact.FP32, 80)
	in := randomInput(rand.New(rand.NewSource(8)), c, 2, 8, false)
	logits := make([]float32, 2*c.NumLabels)
	r2, err := fx.model.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	r2.Close()
	r2.Close()
	if err := r2.Run(in, logits); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
	if _, err := fx.model.NewRunner(1 << 20); err == nil {
		t.Fatal("NewRunner on an absurd core succeeded")
	}
	fx.model.Close() // also stops fx.runner
	if err := fx.runner.Run(in, logits); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Run after Model.Close: %v, want ErrClosed", err)
	}
	if _, err := fx.model.NewRunner(-1); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("NewRunner after Model.Close: %v, want ErrClosed", err)
	}
}

func TestPrecisionMismatch(t *testing.T) {
	c := smallConfig(bert.GELUExact)
	path := filepath.Join(t.TempDir(), "m.bqa")
	writeArtifact(t, path, c, 2, 8, artifact.FP32, 90)
	if err := artifact.SetHeader(path, func(h *artifact.Header) { h.Precision = artifact.BF16 }); err != nil {
		t.Fatal(err)
	}
	f, err := artifact.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be, _ := engine.Get(Name)
	if m, err := be.Load(f, engine.Options{}); err == nil {
		m.Close()
		t.Fatal("Load accepted f32 weights in a bf16 artifact")
	} else {
		t.Log(err)
	}
}

func TestDescribe(t *testing.T) {
	fx := load(t, smallConfig(bert.GELUExact), 2, 8, artifact.BF16, 100)
	t.Log(fx.model.(*Model).Describe())
	for _, post := range []bool{true, false} {
		if err := fx.runner.(Roofliner).RunGEMMs(post); err != nil {
			t.Fatalf("RunGEMMs(%v): %v", post, err)
		}
	}
}

// TestWriteSyntheticLarge writes a random-weight BERT-Large bf16 artifact
// (batch 4 × seq 128, ~730 MB) to $BERTQ_WRITE_LARGE, for manual speed tests.
func TestWriteSyntheticLarge(t *testing.T) {
	path := os.Getenv("BERTQ_WRITE_LARGE")
	if path == "" {
		t.Skip("set BERTQ_WRITE_LARGE=/path/to/file to write a synthetic BERT-Large artifact")
	}
	prec := artifact.BF16
	if os.Getenv("BERTQ_WRITE_LARGE_FP32") != "" {
		prec = artifact.FP32
	}
	writeArtifact(t, path, bert.Large(), 4, 128, prec, 1)
}

// BenchmarkNonGEMM times everything the roofline leaves out: embedding,
// conversions, re-layouts, softmax, LayerNorm, pooler and classifier.
func BenchmarkNonGEMM(b *testing.B) {
	benchRunner(b, func(r *Runner, in engine.Input, logits []float32) error { return r.RunNonGEMM(in, logits) })
}

// BenchmarkForward runs single-runner forwards on $BERTQ_BENCH_ARTIFACT (or a
// mid-size synthetic bf16 model) and reports sequences per second.
func BenchmarkForward(b *testing.B) {
	benchRunner(b, func(r *Runner, in engine.Input, logits []float32) error { return r.Run(in, logits) })
}

func benchRunner(b *testing.B, run func(r *Runner, in engine.Input, logits []float32) error) {
	path := os.Getenv("BERTQ_BENCH_ARTIFACT")
	if path == "" {
		path = filepath.Join(b.TempDir(), "bench.bqa")
		c := smallConfig(bert.GELUExact)
		c.HiddenSize, c.NumHeads, c.IntermediateSize, c.NumLayers, c.MaxPositions = 256, 4, 1024, 4, 128
		writeArtifact(b, path, c, 4, 128, artifact.BF16, 1)
	}
	f, err := artifact.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	be, _ := engine.Get(Name)
	m, err := be.Load(f, engine.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	er, err := m.NewRunner(0)
	if err != nil {
		b.Fatal(err)
	}
	defer er.Close()
	r := er.(*Runner)
	s := m.Spec()
	in := randomInput(rand.New(rand.NewSource(1)), f.Header.Model, s.Batch, s.Seq, false)
	logits := make([]float32, s.Batch*s.Labels)
	if err := r.Run(in, logits); err != nil { // warm-up
		b.Fatal(err)
	}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if err := run(r, in, logits); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*s.Batch)/time.Since(start).Seconds(), "seq/s")
}
