//go:build cgo

package onednn

/*
#cgo CFLAGS: -O3 -std=gnu11
#cgo LDFLAGS: -ldnnl -lgomp -lm
#include <stdlib.h>
#include "bq.h"
#include "kernels.h"
#include "peak.h"
void omp_set_num_threads(int);
*/
import "C"

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

type backend struct{}

func init() { engine.Register(backend{}) }

func (backend) Name() string { return Name }

var probe struct {
	once sync.Once
	err  error
}

// Available reports whether oneDNN can make a CPU engine here.
func (backend) Available() error {
	probe.once.Do(func() { probe.err = cerr(C.bq_probe()) })
	return probe.err
}

// cerr turns a C message (NULL for success) into an error and frees it.
func cerr(p *C.char) error {
	if p == nil {
		return nil
	}
	defer C.free(unsafe.Pointer(p))
	return errors.New("onednn: " + C.GoString(p))
}

// onThread runs fn on a fresh OS thread set up like a runner's (one OpenMP
// thread), so that primitive descriptors made there pick the same layouts the
// runners' will. The thread dies with the goroutine.
func onThread(fn func() error) error {
	ch := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with its OpenMP setting
		defer func() {
			if p := recover(); p != nil {
				ch <- fmt.Errorf("onednn: internal error: %v", p)
			}
		}()
		C.omp_set_num_threads(1)
		ch <- fn()
	}()
	return <-ch
}

var matrixNames = [4]string{"qkv", "attention output", "ffn in", "ffn out"}

func activationCode(a bert.Activation) (C.int, error) {
	switch a {
	case bert.GELUExact:
		return C.ACT_GELU_ERF, nil
	case bert.GELUTanh:
		return C.ACT_GELU_TANH, nil
	case bert.GELUCrude:
		return C.ACT_GELU_CRUDE, nil
	}
	return 0, fmt.Errorf("onednn: unsupported activation %q", a)
}

func weightType(p artifact.Precision) (C.int, error) {
	switch p {
	case artifact.FP32:
		return C.BQ_F32, nil
	case artifact.BF16:
		return C.BQ_BF16, nil
	case artifact.INT8:
		return C.BQ_INT8, nil
	}
	return 0, fmt.Errorf("onednn: unsupported precision %q", p)
}

func gemmChoice(s string) (C.int, error) {
	switch s {
	case "", engine.GEMMAuto:
		return C.BQ_GEMM_AUTO, nil
	case engine.GEMMLibrary:
		return C.BQ_GEMM_ONEDNN, nil
	}
	return 0, fmt.Errorf("onednn: gemm %q: want %s or %s", s, engine.GEMMAuto, engine.GEMMLibrary)
}

func matmulMode(s string) (C.int, error) {
	switch s {
	case "", "auto":
		return C.BQ_MM_AUTO, nil
	case engine.RowsRuntime:
		return C.BQ_MM_RUNTIME, nil
	case engine.RowsBucketed:
		return C.BQ_MM_BUCKET, nil
	}
	return 0, fmt.Errorf("onednn: matmul rows %q: want auto, %s or %s", s, engine.RowsRuntime, engine.RowsBucketed)
}

// matrixData returns a layer weight's storage in the artifact's type, and
// its column scales for int8.
func matrixData(mt *engine.Matrix, wt C.int) (unsafe.Pointer, *C.float, bool) {
	switch wt {
	case C.BQ_BF16:
		return unsafe.Pointer(unsafe.SliceData(mt.BF16)), nil, len(mt.BF16) == mt.K*mt.N
	case C.BQ_INT8:
		ok := len(mt.I8) == mt.K*mt.N && len(mt.Scale) == mt.N
		return unsafe.Pointer(unsafe.SliceData(mt.I8)), (*C.float)(unsafe.SliceData(mt.Scale)), ok
	}
	return unsafe.Pointer(unsafe.SliceData(mt.F32)), nil, len(mt.F32) == mt.K*mt.N
}

func fptr(v []float32) *C.float { return (*C.float)(unsafe.Pointer(unsafe.SliceData(v))) }

// Load reorders the artifact's encoder weights into the layouts the matmul
// primitives want (shared by every runner), dropping the artifact's mapped
// pages from resident memory as it goes; the embedding tables it keeps
// reading from the artifact fault back in as touched.
func (backend) Load(f *artifact.File, opts engine.Options) (engine.Model, error) {
	w, err := engine.ReadWeights(f)
	if err != nil {
		return nil, err
	}
	spec, c := w.Spec, w.Config
	wt, err := weightType(spec.Precision)
	if err != nil {
		return nil, err
	}
	act, err := activationCode(w.Activation)
	if err != nil {
		return nil, err
	}
	mode, err := matmulMode(opts.MatmulRows)
	if err != nil {
		return nil, err
	}
	gemm, err := gemmChoice(opts.GEMM)
	if err != nil {
		return nil, err
	}
	for l := range w.Layers {
		lw := &w.Layers[l]
		for k, mt := range [4]*engine.Matrix{&lw.QKV, &lw.AttnOut, &lw.FFNIn, &lw.FFNOut} {
			if _, _, ok := matrixData(mt, wt); !ok {
				return nil, fmt.Errorf("onednn: %w: the artifact is %s but layer %d %s weight is stored in another dtype",
					artifact.ErrHeader, spec.Precision, l, matrixNames[k])
			}
		}
	}
	m := &Model{w: w, spec: spec, runners: map[*Runner]struct{}{}}
	m.clsW = make([]float64, len(w.ClassifierW))
	for i, v := range w.ClassifierW {
		m.clsW[i] = float64(v)
	}
	m.clsB = make([]float64, len(w.ClassifierB))
	for i, v := range w.ClassifierB {
		m.clsB[i] = float64(v)
	}
	dims := C.bq_dims{
		max_tokens: C.int(spec.Batch * spec.Seq), max_seqs: C.int(spec.Batch), max_len: C.int(spec.Seq),
		H: C.int(c.HiddenSize), NH: C.int(c.NumHeads), I: C.int(c.IntermediateSize), L: C.int(c.NumLayers),
		wtype: wt, act: act, eps: C.float(c.LayerNormEps), mm_mode: mode, gemm: gemm,
	}
	err = onThread(func() error {
		var cm *C.bq_model
		if err := cerr(C.bq_model_create(&dims, &cm)); err != nil {
			return err
		}
		m.c = cm
		for l := range w.Layers {
			lw := &w.Layers[l]
			for k, mt := range [4]*engine.Matrix{&lw.QKV, &lw.AttnOut, &lw.FFNIn, &lw.FFNOut} {
				p, scales, _ := matrixData(mt, wt)
				if err := cerr(C.bq_model_set_matrix(cm, C.int(l), C.int(k), p, scales)); err != nil {
					return err
				}
			}
			vecs := [8][]float32{lw.QKVBias, lw.AttnOutBias, lw.FFNInBias, lw.FFNOutBias,
				lw.AttnNormGamma, lw.AttnNormBeta, lw.FFNNormGamma, lw.FFNNormBeta}
			for i, v := range vecs {
				C.bq_model_set_vector(cm, C.int(l), C.int(i), fptr(v))
			}
			// Drop the pages read so far, so that resident memory never holds
			// more than one layer twice.
			f.DropPages()
		}
		// The tables stay in the mapped artifact, which outlives the model.
		C.bq_model_set_embeddings(cm, fptr(w.Word), fptr(w.Position), fptr(w.Type), fptr(w.EmbGamma), fptr(w.EmbBeta))
		C.bq_model_set_pooler(cm, fptr(w.PoolerW), fptr(w.PoolerB))
		return nil
	})
	if err != nil {
		if m.c != nil {
			C.bq_model_destroy(m.c)
		}
		return nil, err
	}
	m.desc = C.GoString(C.bq_model_describe(m.c))
	f.DropPages()
	return m, nil
}

// Model is a loaded artifact: the reordered weights every runner shares.
type Model struct {
	w          *engine.Weights
	spec       engine.Spec
	c          *C.bq_model
	desc       string
	clsW, clsB []float64

	mu      sync.Mutex
	runners map[*Runner]struct{}
	closed  bool
}

// Spec is the shape and precision the artifact was compiled for.
func (m *Model) Spec() engine.Spec { return m.spec }

// Backend is "onednn".
func (m *Model) Backend() string { return Name }

// Describe names the oneDNN version, the CPU ISA it dispatches to, what the
// matmuls compute in and the implementations they chose (e.g. gemm:jit,
// brg:avx512_core_amx_bf16).
func (m *Model) Describe() string { return m.desc }

// Close stops the model's remaining runners and frees its weights.
func (m *Model) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	rs := make([]*Runner, 0, len(m.runners))
	for r := range m.runners {
		rs = append(rs, r)
	}
	m.mu.Unlock()
	for _, r := range rs {
		r.Close()
	}
	C.bq_model_destroy(m.c)
	m.c = nil
	return nil
}

// NewRunner starts a runner on its own locked OS thread, pinned to core when
// core ≥ 0, with its own oneDNN stream, primitives and activation buffers.
func (m *Model) NewRunner(core int) (engine.Runner, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, fmt.Errorf("onednn: %w", engine.ErrClosed)
	}
	var set unix.CPUSet
	if core >= len(set)*64 {
		return nil, fmt.Errorf("onednn: core %d out of range", core)
	}
	r := &Runner{m: m, core: core, reqs: make(chan request), quit: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the pinned thread exits with the runner
		if core >= 0 {
			set.Set(core)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				ready <- fmt.Errorf("onednn: pinning a runner to core %d: %w", core, err)
				return
			}
		}
		C.omp_set_num_threads(1)
		var c *C.bq_runner
		if err := cerr(C.bq_runner_create(m.c, &c)); err != nil {
			ready <- err
			return
		}
		ready <- nil
		r.loop(c)
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	m.runners[r] = struct{}{}
	return r, nil
}

// Runner executes batches on one core. Run blocks until its batch is done.
type Runner struct {
	m         *Model
	core      int
	reqs      chan request
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type request struct {
	fn    func(c *C.bq_runner) error
	reply chan error
}

var (
	_ engine.Runner      = (*Runner)(nil)
	_ engine.PhaseRunner = (*Runner)(nil)
	_ engine.Peaker      = (*Runner)(nil)
)

// ISAPeak measures, on the runner's own thread (and core, when pinned), the
// peak rate of the instruction its matmuls run on.
func (r *Runner) ISAPeak(d time.Duration) (isa string, gflops float64, err error) {
	p := C.bq_model_peak_isa(r.m.c)
	if p == nil {
		return "", 0, fmt.Errorf("onednn: no peak loop for this CPU's %s matmuls", r.m.spec.Precision)
	}
	isa = C.GoString(p)
	err = r.do(func(*C.bq_runner) error {
		gflops = float64(C.bq_peak_gops(p, C.double(d.Seconds())))
		if gflops <= 0 {
			return fmt.Errorf("onednn: the %s peak loop cannot run here", isa)
		}
		return nil
	})
	return isa, gflops, err
}

// Run fills logits ([sequences][Labels]) for one batch, packed or static.
func (r *Runner) Run(in engine.Input, logits []float32) error {
	return r.RunPhase(engine.PhaseForward, in, logits)
}

var phaseModes = map[engine.Phase]C.int{
	engine.PhaseForward:   C.BQ_FORWARD,
	engine.PhaseGEMMs:     C.BQ_GEMMS,
	engine.PhaseBareGEMMs: C.BQ_BARE_GEMMS,
	engine.PhaseNonGEMM:   C.BQ_NON_GEMM,
}

// RunPhase runs part of a forward of in (see engine.PhaseRunner); only the
// whole forward leaves meaningful logits.
func (r *Runner) RunPhase(p engine.Phase, in engine.Input, logits []float32) error {
	s, c := r.m.spec, r.m.w.Config
	mode, ok := phaseModes[p]
	if !ok {
		return fmt.Errorf("%w: unknown phase %d", engine.ErrInput, p)
	}
	if err := engine.Check(s, c.VocabSize, c.TypeVocabSize, in); err != nil {
		return err
	}
	if err := engine.CheckLogits(s, in, logits); err != nil {
		return err
	}
	lens := in.Lengths
	if lens == nil {
		lens = make([]int32, s.Batch)
		for i := range lens {
			lens[i] = int32(s.Seq)
		}
	}
	return r.do(func(cr *C.bq_runner) error {
		var mask *C.int32_t
		if in.AttentionMask != nil {
			mask = (*C.int32_t)(unsafe.Pointer(&in.AttentionMask[0]))
		}
		err := cerr(C.bq_runner_forward(cr, mode, C.int(len(lens)), (*C.int32_t)(unsafe.Pointer(&lens[0])),
			(*C.int32_t)(unsafe.Pointer(&in.InputIDs[0])), (*C.int32_t)(unsafe.Pointer(&in.TokenTypeIDs[0])), mask))
		if err != nil || mode != C.BQ_FORWARD {
			return err
		}
		r.classify(C.bq_runner_pooled(cr), len(lens), logits)
		return nil
	})
}

// classify runs the classifier in float64 on the pooled states.
func (r *Runner) classify(p *C.float, seqs int, logits []float32) {
	H, L := r.m.w.Config.HiddenSize, r.m.spec.Labels
	pooled := unsafe.Slice((*float32)(unsafe.Pointer(p)), seqs*H)
	for b := 0; b < seqs; b++ {
		row := pooled[b*H : (b+1)*H]
		for l := 0; l < L; l++ {
			acc := r.m.clsB[l]
			for k, v := range row {
				acc += float64(v) * r.m.clsW[k*L+l]
			}
			logits[b*L+l] = float32(acc)
		}
	}
}

func (r *Runner) do(fn func(c *C.bq_runner) error) error {
	req := request{fn: fn, reply: make(chan error, 1)}
	select {
	case r.reqs <- req:
	case <-r.quit:
		return fmt.Errorf("onednn: %w", engine.ErrClosed)
	}
	return <-req.reply
}

// Close stops the runner and frees its buffers; it waits for a batch in flight.
func (r *Runner) Close() error {
	r.closeOnce.Do(func() {
		close(r.quit)
		<-r.done
		r.m.mu.Lock()
		delete(r.m.runners, r)
		r.m.mu.Unlock()
	})
	return nil
}

func (r *Runner) loop(c *C.bq_runner) {
	defer close(r.done)
	defer C.bq_runner_destroy(c)
	for {
		select {
		case <-r.quit:
			return
		case req := <-r.reqs:
			req.reply <- r.exec(c, req)
		}
	}
}

func (r *Runner) exec(c *C.bq_runner, req request) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("onednn: internal error: %v", p)
		}
	}()
	return req.fn(c)
}

// setSIMD switches the C element-wise kernels between AVX2 (when the CPU has
// it) and the portable scalar loops; tests compare the two.
func setSIMD(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.bq_set_simd(v)
}
