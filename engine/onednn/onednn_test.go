//go:build cgo

package onednn

import (
	"errors"
	"fmt"
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
	"github.com/bertq/bertq/engine/enginetest"
	_ "github.com/bertq/bertq/engine/gocpu" // the int8 reference
)

var (
	small = enginetest.SmallConfig
	pack  = enginetest.Pack
)

func load(t testing.TB, c bert.Config, batch, seq int, prec artifact.Precision, seed int64) *enginetest.Fixture {
	t.Helper()
	return enginetest.Load(t, Name, engine.Options{}, c, batch, seq, prec, seed)
}

func model(fx *enginetest.Fixture) *Model { return fx.Model.(*Model) }

// widened reports whether the model runs its bf16 weights as f32 because the
// CPU has no bf16 matmuls.
func widened(fx *enginetest.Fixture) bool {
	return strings.Contains(model(fx).Describe(), "widened to f32")
}

// randomPacked is a packed batch of n sequences of random lengths up to seq.
func randomPacked(rng *rand.Rand, c bert.Config, n, seq int) engine.Input {
	seqs := make([]enginetest.Seq, n)
	for i := range seqs {
		seqs[i] = enginetest.RandomSeq(rng, c, 1+rng.Intn(seq))
	}
	return pack(seqs...)
}

func TestRegistered(t *testing.T) {
	be, err := engine.Get(Name)
	if err != nil {
		t.Fatal(err)
	}
	if be.Name() != Name {
		t.Fatalf("Get(%q).Name() = %q", Name, be.Name())
	}
}

func TestConformance(t *testing.T) {
	for _, rows := range []string{engine.RowsRuntime, engine.RowsBucketed} {
		t.Run(rows, func(t *testing.T) { enginetest.Conformance(t, Name, engine.Options{MatmulRows: rows}) })
	}
}

// fp32 agrees with the float64 reference to 1e-4 on logits of magnitude ~1,
// for every activation, on static batches with padding inside sequences too
// (the mask) and on packed ones.
func TestFP32MatchesFloat64(t *testing.T) {
	for i, act := range enginetest.Activations {
		t.Run(string(act), func(t *testing.T) {
			c := small(act)
			fx := load(t, c, 3, 24, artifact.FP32, int64(10+i))
			rng := rand.New(rand.NewSource(int64(i)))
			for name, in := range map[string]engine.Input{
				"static":       enginetest.RandomStatic(rng, c, 3, 24, false),
				"static holes": enginetest.RandomStatic(rng, c, 3, 24, true),
				"packed":       randomPacked(rng, c, 3, 24),
			} {
				got := fx.Run(t, in)
				if d := enginetest.MaxDiff(got, enginetest.Reference(fx.Weights, in, enginetest.Emulate{})); d > 1e-4 {
					t.Errorf("%s: max |Δlogit| = %.3g > 1e-4", name, d)
				}
			}
		})
	}
}

// A bf16 artifact is held to two bounds where the CPU multiplies in bf16.
// Against a reference that rounds every matmul input to bf16 the engine
// agrees unless some input lands on the other side of a rounding boundary
// than its float64 twin; each flip moves one element by one bf16 ulp (2^-8
// relative), which on this toy model (hidden 64, where one element weighs a
// lot) reaches ~6e-3, hence 0.01. Against the exact float64 forward every
// matmul input carries bf16's 2^-9 rounding; through 2 layers that is ~1%
// of an O(1) logit, hence 0.05. Where the CPU has no bf16 matmuls, the
// weights run widened to f32 and only f32 rounding remains (1e-4). A wiring
// mistake costs O(0.1–1).
func TestBF16MatchesReference(t *testing.T) {
	for i, act := range enginetest.Activations {
		t.Run(string(act), func(t *testing.T) {
			c := small(act)
			fx := load(t, c, 4, 32, artifact.BF16, int64(20+i))
			rng := rand.New(rand.NewSource(int64(i)))
			for _, holes := range []bool{false, true} {
				in := enginetest.RandomStatic(rng, c, 4, 32, holes)
				got := fx.Run(t, in)
				exact := enginetest.MaxDiff(got, enginetest.Reference(fx.Weights, in, enginetest.Emulate{}))
				if widened(fx) {
					if exact > 1e-4 {
						t.Errorf("holes=%v (weights widened to f32): %.3g off the float64 reference, want ≤ 1e-4", holes, exact)
					}
					continue
				}
				emu := enginetest.MaxDiff(got, enginetest.Reference(fx.Weights, in, enginetest.Emulate{BF16: true}))
				t.Logf("holes=%v max |Δlogit| vs bf16-emulating reference %.2g, vs float64 %.2g", holes, emu, exact)
				if emu > 0.01 || exact > 0.05 {
					t.Errorf("holes=%v: %.3g off the bf16-emulating reference (want ≤ 0.01), %.3g off float64 (want ≤ 0.05)", holes, emu, exact)
				}
			}
		})
	}
}

// int8 runs the plain-Go backend's int8 arithmetic: the same quantized
// activations and exact integer dot products, so that only float32
// dequantization, LayerNorm and GELU rounding separate the two (observed
// ≤ 1e-6), unless a value lands on the other side of a quantization boundary
// in one of them: one step (1/255 of a row's range) moves one element, which on
// this toy model (hidden 64) can move a logit by a few hundredths. So most
// sequences must agree to 1e-4 and none may be further off than 0.1; a
// wiring mistake (scale, zero point, bias) moves every sequence by O(0.1–1).
// The bound against float64 (0.15) is what per-token u8 activations and s8
// weights cost at hidden 64.
func TestInt8MatchesReference(t *testing.T) {
	for i, act := range enginetest.Activations {
		t.Run(string(act), func(t *testing.T) {
			c := small(act)
			fx := load(t, c, 4, 32, artifact.INT8, int64(30+i))
			ref := enginetest.Load(t, "go", engine.Options{}, c, 4, 32, artifact.INT8, int64(30+i))
			rng := rand.New(rand.NewSource(int64(i)))
			var vsGo, vsEmu flips
			for _, in := range []engine.Input{
				enginetest.RandomStatic(rng, c, 4, 32, true), randomPacked(rng, c, 4, 32),
				enginetest.RandomStatic(rng, c, 4, 32, false), randomPacked(rng, c, 4, 32),
			} {
				got, want := fx.Run(t, in), ref.Run(t, in)
				vsEmu.add(t, "plain-Go int8 vs the int8-emulating float64 reference", want, enginetest.Reference(fx.Weights, in, enginetest.Emulate{Int8: true}), c.NumLabels)
				vsGo.add(t, "onednn vs plain-Go int8", got, widen64(want), c.NumLabels)
				if d := enginetest.MaxDiff(got, enginetest.Reference(fx.Weights, in, enginetest.Emulate{})); d > 0.15 {
					t.Errorf("%.3g off float64 (want ≤ 0.15)", d)
				}
			}
			vsGo.check(t, "onednn vs plain-Go int8")
			vsEmu.check(t, "plain-Go int8 vs the int8-emulating float64 reference")
		})
	}
}

// flips counts sequences whose logits agree within 1e-4, and fails those
// further apart than 0.1 (see TestInt8MatchesReference).
type flips struct{ close, seqs int }

func (f *flips) add(t *testing.T, what string, got []float32, want []float64, L int) {
	t.Helper()
	for b := 0; b < len(want)/L; b++ {
		d := enginetest.MaxDiff(got[b*L:(b+1)*L], want[b*L:(b+1)*L])
		f.seqs++
		if d <= 1e-4 {
			f.close++
		} else if d > 0.1 {
			t.Errorf("%s: a sequence is %.3g apart: %v, want %v", what, d, got[b*L:(b+1)*L], want[b*L:(b+1)*L])
		}
	}
}

func (f *flips) check(t *testing.T, what string) {
	t.Helper()
	t.Logf("%s: %d of %d sequences within 1e-4", what, f.close, f.seqs)
	if f.close*4 < f.seqs*3 {
		t.Errorf("%s: only %d of %d sequences within 1e-4 (want ≥ 3/4)", what, f.close, f.seqs)
	}
}

func widen64(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

// Packing changes nothing in int8 either: each token's activations are
// quantized with its own scale.
func TestInt8PackedEqualsAlone(t *testing.T) {
	c := small(bert.GELUExact)
	fx := load(t, c, 4, 24, artifact.INT8, 40)
	rng := rand.New(rand.NewSource(4))
	seqs := []enginetest.Seq{enginetest.RandomSeq(rng, c, 24), enginetest.RandomSeq(rng, c, 1), enginetest.RandomSeq(rng, c, 9), enginetest.RandomSeq(rng, c, 17)}
	mixed := fx.Run(t, pack(seqs...))
	L := c.NumLabels
	for i, s := range seqs {
		alone := fx.Run(t, pack(s))
		for l := 0; l < L; l++ {
			if d := alone[l] - mixed[i*L+l]; d > 1e-5 || d < -1e-5 {
				t.Errorf("sequence %d (%d tokens): packed %v, alone %v", i, len(s.IDs), mixed[i*L:(i+1)*L], alone)
				break
			}
		}
	}
}

// The AVX2 kernels and the portable scalar ones compute the same thing.
func TestScalarKernelsAgree(t *testing.T) {
	for _, prec := range []artifact.Precision{artifact.FP32, artifact.BF16, artifact.INT8} {
		t.Run(string(prec), func(t *testing.T) {
			c := small(bert.GELUExact)
			c.HiddenSize, c.NumHeads = 40, 2 // exercises the vector loops' tails (head width 20)
			fx := load(t, c, 2, 20, prec, 50)
			in := enginetest.RandomStatic(rand.New(rand.NewSource(3)), c, 2, 20, true)
			simd := fx.Run(t, in)
			setSIMD(false)
			scalar := fx.Run(t, in)
			setSIMD(true)
			var s64 []float64
			for _, v := range scalar {
				s64 = append(s64, float64(v))
			}
			// int8 may flip a quantization step between the two (see
			// TestInt8MatchesReference); bf16 a rounding.
			tol := map[artifact.Precision]float64{artifact.FP32: 1e-5, artifact.BF16: 2e-3, artifact.INT8: 2e-3}[prec]
			if widened(fx) {
				tol = 1e-5
			}
			if d := enginetest.MaxDiff(simd, s64); d > tol {
				t.Errorf("avx2 %v, scalar %v: %.3g apart (want ≤ %g)", simd, scalar, d, tol)
			}
		})
	}
}

// Runtime and bucketed matmul rows give the same logits.
func TestMatmulRowsAgree(t *testing.T) {
	c := small(bert.GELUTanh)
	path := filepath.Join(t.TempDir(), "m.bqa")
	enginetest.WriteArtifact(t, path, c, 4, 24, artifact.FP32, 55)
	rng := rand.New(rand.NewSource(5))
	ins := []engine.Input{randomPacked(rng, c, 4, 24), randomPacked(rng, c, 1, 24), randomPacked(rng, c, 3, 24)}
	var out [2][][]float32
	for k, rows := range []string{engine.RowsRuntime, engine.RowsBucketed} {
		fx := enginetest.Load(t, Name, engine.Options{MatmulRows: rows}, c, 4, 24, artifact.FP32, 55)
		if !strings.Contains(model(fx).Describe(), map[string]string{engine.RowsRuntime: "runtime M", engine.RowsBucketed: "bucketed M"}[rows]) {
			t.Errorf("%s: Describe() = %q does not say so", rows, model(fx).Describe())
		}
		for _, in := range ins {
			out[k] = append(out[k], fx.Run(t, in))
		}
	}
	for i := range ins {
		var b []float64
		for _, v := range out[1][i] {
			b = append(b, float64(v))
		}
		if d := enginetest.MaxDiff(out[0][i], b); d > 1e-5 {
			t.Errorf("batch %d: runtime %v, bucketed %v", i, out[0][i], out[1][i])
		}
	}
	f, err := artifact.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be, _ := engine.Get(Name)
	if m, err := be.Load(f, engine.Options{MatmulRows: "sideways"}); err == nil {
		m.Close()
		t.Error("Load accepted matmul rows \"sideways\"")
	}
}

// Whatever sits at masked positions, the logits are the same bits: masked
// keys get probability exactly zero, and a matmul's output row depends only
// on its own input row.
func TestPaddingContentIrrelevant(t *testing.T) {
	for _, prec := range []artifact.Precision{artifact.FP32, artifact.BF16, artifact.INT8} {
		t.Run(string(prec), func(t *testing.T) {
			c := small(bert.GELUExact)
			fx := load(t, c, 4, 32, prec, 45)
			rng := rand.New(rand.NewSource(9))
			in := enginetest.RandomStatic(rng, c, 4, 32, false)
			want := fx.Run(t, in)
			for i, m := range in.AttentionMask {
				if m == 0 {
					in.InputIDs[i] = int32(rng.Intn(c.VocabSize))
					in.TokenTypeIDs[i] = int32(rng.Intn(2))
				}
			}
			if got := fx.Run(t, in); !enginetest.BitsEqual(got, want) {
				t.Fatalf("changing padding tokens changed the logits: %v, was %v", got, want)
			}
		})
	}
}

// An artifact parsed from Go memory (not mapped) works the same; run under
// GOEXPERIMENT=cgocheck2 this checks the cgo pointer rules.
func TestLoadFromGoMemory(t *testing.T) {
	c := small(bert.GELUExact)
	fx := load(t, c, 2, 16, artifact.BF16, 47)
	in := randomPacked(rand.New(rand.NewSource(10)), c, 2, 16)
	want := fx.Run(t, in)
	b, err := os.ReadFile(fx.File.Path)
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
	if !enginetest.BitsEqual(got, want) {
		t.Fatalf("from memory %v, from the mapped file %v", got, want)
	}
}

// A runner's results are the same bits run after run, whatever ran before
// (other batch sizes, the partial phases that scribble over every buffer).
func TestDeterministic(t *testing.T) {
	c := small(bert.GELUExact)
	for _, prec := range []artifact.Precision{artifact.FP32, artifact.INT8} {
		fx := load(t, c, 4, 32, prec, 50)
		rng := rand.New(rand.NewSource(5))
		in := randomPacked(rng, c, 3, 32)
		first := fx.Run(t, in)
		pr := fx.Runner.(engine.PhaseRunner)
		for i := 0; i < 12; i++ {
			runtime.GC()
			other := randomPacked(rng, c, 1+i%4, 32)
			if err := pr.RunPhase(engine.Phase(i%4), other, make([]float32, 4*c.NumLabels)); err != nil {
				t.Fatal(err)
			}
			if got := fx.Run(t, in); !enginetest.BitsEqual(got, first) {
				t.Fatalf("%s run %d: %v, first run %v", prec, i, got, first)
			}
		}
	}
}

func TestConcurrentRunnersAgree(t *testing.T) {
	c := small(bert.GELUTanh)
	fx := load(t, c, 4, 32, artifact.BF16, 60)
	in := randomPacked(rand.New(rand.NewSource(6)), c, 4, 32)
	want := fx.Run(t, in)
	cores := []int{0, 1}
	if runtime.NumCPU() < 2 {
		cores = []int{-1, -1}
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(cores))
	for _, core := range cores {
		r, err := fx.Model.NewRunner(core)
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
				if !enginetest.BitsEqual(logits, want) {
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

func TestClose(t *testing.T) {
	c := small(bert.GELUExact)
	fx := load(t, c, 2, 8, artifact.FP32, 80)
	in := randomPacked(rand.New(rand.NewSource(8)), c, 2, 8)
	logits := make([]float32, 2*c.NumLabels)
	r2, err := fx.Model.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	r2.Close()
	r2.Close()
	if err := r2.Run(in, logits); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
	if _, err := fx.Model.NewRunner(1 << 20); err == nil {
		t.Fatal("NewRunner on an absurd core succeeded")
	}
	fx.Model.Close() // also stops fx.Runner
	if err := fx.Runner.Run(in, logits); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("Run after Model.Close: %v, want ErrClosed", err)
	}
	if _, err := fx.Model.NewRunner(-1); !errors.Is(err, engine.ErrClosed) {
		t.Fatalf("NewRunner after Model.Close: %v, want ErrClosed", err)
	}
}

func TestPrecisionMismatch(t *testing.T) {
	c := small(bert.GELUExact)
	for _, claim := range []artifact.Precision{artifact.BF16, artifact.INT8} {
		path := filepath.Join(t.TempDir(), "m.bqa")
		enginetest.WriteArtifact(t, path, c, 2, 8, artifact.FP32, 90)
		err := artifact.SetHeader(path, func(h *artifact.Header) {
			h.Precision = claim
			if claim == artifact.INT8 {
				h.Quantization = &artifact.Quantization{Weights: artifact.WeightsS8PairSafe, Activations: artifact.ActivationsU8PerToken}
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		f, err := artifact.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		be, _ := engine.Get(Name)
		if m, err := be.Load(f, engine.Options{}); err == nil {
			m.Close()
			t.Errorf("Load accepted f32 weights in a %s artifact", claim)
		} else if !errors.Is(err, artifact.ErrHeader) {
			t.Errorf("%s: %v, want ErrHeader", claim, err)
		}
		f.Close()
	}
}

// Describe says what runs: the oneDNN version, the ISA, what the matmuls
// compute in, how rows are met, the implementations and the kernels.
func TestDescribe(t *testing.T) {
	for prec, want := range map[artifact.Precision]string{artifact.FP32: "f32 matmuls", artifact.INT8: "int8 matmuls", artifact.BF16: "bf16"} {
		fx := load(t, small(bert.GELUExact), 2, 8, prec, 100)
		d := model(fx).Describe()
		for _, part := range []string{"oneDNN 2.", "isa ", want, " M: qkv ", "element-wise kernels "} {
			if !strings.Contains(d, part) {
				t.Errorf("%s: Describe() = %q lacks %q", prec, d, part)
			}
		}
	}
}

// Every runner can measure the peak of its matmuls' instruction.
func TestISAPeak(t *testing.T) {
	for prec, want := range map[artifact.Precision]string{artifact.FP32: "fma", artifact.INT8: "d"} {
		fx := load(t, small(bert.GELUExact), 2, 8, prec, 110)
		isa, g, err := fx.Runner.(engine.Peaker).ISAPeak(50 * time.Millisecond)
		if err != nil {
			t.Fatalf("%s: %v", prec, err)
		}
		t.Logf("%s: %s %.1f GFLOP/s", prec, isa, g)
		if !strings.Contains(isa, want) || !(g > 1) {
			t.Errorf("%s: ISAPeak = %q %g", prec, isa, g)
		}
	}
}

// BenchmarkForward runs single-runner forwards of packed batches on
// $BERTQ_BENCH_ARTIFACT (or a mid-size synthetic fp32 model) and reports
// sequences per second. (`bertq bench` is the full benchmark.)
func BenchmarkForward(b *testing.B) {
	path := os.Getenv("BERTQ_BENCH_ARTIFACT")
	if path == "" {
		path = filepath.Join(b.TempDir(), "bench.bqa")
		c := small(bert.GELUExact)
		c.HiddenSize, c.NumHeads, c.IntermediateSize, c.NumLayers, c.MaxPositions = 256, 4, 1024, 4, 128
		enginetest.WriteArtifact(b, path, c, 4, 128, artifact.FP32, 1)
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
	r, err := m.NewRunner(0)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	s := m.Spec()
	w, err := engine.ReadWeights(f)
	if err != nil {
		b.Fatal(err)
	}
	in := randomPacked(rand.New(rand.NewSource(1)), w.Config, s.Batch, s.Seq)
	logits := make([]float32, s.Batch*s.Labels)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.Run(in, logits); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*s.Batch)/b.Elapsed().Seconds(), "seq/s")
}

// The int8 matmuls give the same bits on bertq's own kernels (gemm.h) as on
// oneDNN's: both sum the same exact s32 products, and everything around them
// is shared. Auto picks the own kernels exactly where oneDNN has only its
// AVX2 gemm:jit, and says so.
func TestInt8GEMMsAgree(t *testing.T) {
	c := small(bert.GELUExact)
	rng := rand.New(rand.NewSource(12))
	ins := []engine.Input{enginetest.RandomStatic(rng, c, 4, 24, true), randomPacked(rng, c, 4, 24), randomPacked(rng, c, 1, 24), randomPacked(rng, c, 3, 24)}
	for _, rows := range []string{engine.RowsRuntime, engine.RowsBucketed} {
		lib := enginetest.Load(t, Name, engine.Options{MatmulRows: rows, GEMM: engine.GEMMLibrary}, c, 4, 24, artifact.INT8, 60)
		auto := enginetest.Load(t, Name, engine.Options{MatmulRows: rows}, c, 4, 24, artifact.INT8, 60)
		ld, ad := model(lib).Describe(), model(auto).Describe()
		own := strings.Count(ld, "gemm:jit") == 4 && kernelAVX2()
		if strings.Contains(ld, "bertq:") || own != strings.Contains(ad, "qkv bertq:avx2_u8s8, attention output bertq:avx2_u8s8, ffn bertq:avx2_u8s8/bertq:avx2_u8s8") {
			t.Errorf("%s: library %q, auto %q: want the own kernels in auto exactly where oneDNN has only gemm:jit", rows, ld, ad)
		}
		for i, in := range ins {
			a, b := lib.Run(t, in), auto.Run(t, in)
			for j := range a {
				if a[j] != b[j] {
					t.Fatalf("%s, batch %d: oneDNN %v, own %v", rows, i, a, b)
				}
			}
		}
		t.Logf("%s: own kernels %v: %d batches bit-identical", rows, own, len(ins))
	}
	path := filepath.Join(t.TempDir(), "m.bqa")
	enginetest.WriteArtifact(t, path, c, 2, 8, artifact.INT8, 61)
	f, err := artifact.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be, _ := engine.Get(Name)
	if m, err := be.Load(f, engine.Options{GEMM: "blas"}); err == nil {
		m.Close()
		t.Error("Load accepted gemm \"blas\"")
	}
}
