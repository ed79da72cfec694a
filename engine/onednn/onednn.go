//go:build cgo

package onednn

/*
#cgo CFLAGS: -O3 -std=gnu11
#cgo LDFLAGS: -ldnnl -lgomp -lm
#include <stdlib.h>
#include "bq.h"
void omp_set_num_threads(int);
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
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
		return 0, nil
	case bert.GELUTanh:
		return 1, nil
	case bert.GELUCrude:
		return 2, nil
	}
	return 0, fmt.Errorf("onednn: unsupported activation %q", a)
}

// Load reorders the artifact's encoder weights into oneDNN's blocked layouts
// (shared by every runner), dropping the artifact's mapped pages from resident
// memory as it goes; the embedding tables it keeps reading from the artifact
// fault back in as touched.
func (backend) Load(f *artifact.File, _ engine.Options) (engine.Model, error) {
	w, err := engine.ReadWeights(f)
	if err != nil {
		return nil, err
	}
	spec, c := w.Spec, w.Config
	var bf16 C.int
	switch spec.Precision {
	case artifact.BF16:
		bf16 = 1
	case artifact.FP32:
	default:
		return nil, fmt.Errorf("onednn: unsupported precision %q", spec.Precision)
	}
	act, err := activationCode(w.Activation)
	if err != nil {
		return nil, err
	}
	for l := range w.Layers {
		lw := &w.Layers[l]
		for k, mt := range [4]*engine.Matrix{&lw.QKV, &lw.AttnOut, &lw.FFNIn, &lw.FFNOut} {
			if (bf16 == 1 && len(mt.BF16) != mt.K*mt.N) || (bf16 == 0 && len(mt.F32) != mt.K*mt.N) {
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
	err = onThread(func() error {
		var cm *C.bq_model
		if err := cerr(C.bq_model_create(C.int(spec.Batch), C.int(spec.Seq), C.int(c.HiddenSize), C.int(c.NumHeads),
			C.int(c.IntermediateSize), C.int(c.NumLayers), bf16, act, C.float(c.LayerNormEps), &cm)); err != nil {
			return err
		}
		m.c = cm
		for l := range w.Layers {
			lw := &w.Layers[l]
			for k, mt := range [4]*engine.Matrix{&lw.QKV, &lw.AttnOut, &lw.FFNIn, &lw.FFNOut} {
				var p unsafe.Pointer
				if bf16 == 1 {
					p = unsafe.Pointer(&mt.BF16[0])
				} else {
					p = unsafe.Pointer(&mt.F32[0])
				}
				if err := cerr(C.bq_model_set_matrix(cm, C.int(l), C.int(k), p)); err != nil {
					return err
				}
			}
			vecs := [8][]float32{lw.QKVBias, lw.AttnOutBias, lw.FFNInBias, lw.FFNOutBias,
				lw.AttnNormGamma, lw.AttnNormBeta, lw.FFNNormGamma, lw.FFNNormBeta}
			for i, v := range vecs {
				C.bq_model_set_vector(cm, C.int(l), C.int(i), (*C.float)(unsafe.Pointer(&v[0])))
			}
			// Drop the pages read so far, so that resident memory never holds
			// more than one layer twice.
			f.DropPages()
		}
		return cerr(C.bq_model_set_pooler(cm, (*C.float)(unsafe.Pointer(&w.PoolerW[0])),
			(*C.float)(unsafe.Pointer(&w.PoolerB[0]))))
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

// Spec is the static shape and precision the artifact was compiled for.
func (m *Model) Spec() engine.Spec { return m.spec }

// Backend is "onednn".
func (m *Model) Backend() string { return Name }

// Describe names the oneDNN version, the CPU ISA it dispatches to and the
// implementations its matmul primitives chose (e.g. brg:avx512_core_amx_bf16).
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
	r := &Runner{m: m, reqs: make(chan request), quit: make(chan struct{}), done: make(chan struct{})}
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
	reqs      chan request
	quit      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

type request struct {
	mode   C.int // 0 forward, 1 GEMMs with post-ops, 2 bare GEMMs, 3 all but the encoder GEMMs
	in     engine.Input
	logits []float32
	reply  chan error
}

var (
	_ engine.Runner = (*Runner)(nil)
	_ Roofliner     = (*Runner)(nil)
)

// Run fills logits ([Batch][Labels]) for one full static batch.
func (r *Runner) Run(in engine.Input, logits []float32) error {
	s, c := r.m.spec, r.m.w.Config
	if err := engine.Check(s, c.VocabSize, c.TypeVocabSize, in); err != nil {
		return err
	}
	if len(logits) < s.Batch*s.Labels {
		return fmt.Errorf("%w: logits holds %d values, want %d×%d", engine.ErrInput, len(logits), s.Batch, s.Labels)
	}
	return r.do(request{mode: 0, in: in, logits: logits})
}

// RunGEMMs executes only the matmuls of one forward (see Roofliner).
func (r *Runner) RunGEMMs(postOps bool) error {
	mode := C.int(1)
	if !postOps {
		mode = 2
	}
	return r.do(request{mode: mode})
}

// RunNonGEMM runs one batch through everything but the encoder GEMMs
// (embedding, re-layouts, softmax, LayerNorm, pooler, classifier, on the stale
// GEMM outputs): the work the roofline leaves out, timed alone. Its logits are
// meaningless; it is a diagnostic for benchmarks.
func (r *Runner) RunNonGEMM(in engine.Input, logits []float32) error {
	s, c := r.m.spec, r.m.w.Config
	if err := engine.Check(s, c.VocabSize, c.TypeVocabSize, in); err != nil {
		return err
	}
	if len(logits) < s.Batch*s.Labels {
		return fmt.Errorf("%w: logits holds %d values, want %d×%d", engine.ErrInput, len(logits), s.Batch, s.Labels)
	}
	return r.do(request{mode: 3, in: in, logits: logits})
}

func (r *Runner) do(req request) error {
	req.reply = make(chan error, 1)
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
	if req.mode == 1 || req.mode == 2 {
		return cerr(C.bq_runner_forward(c, req.mode))
	}
	w, s := r.m.w, r.m.spec
	H, T := w.Config.HiddenSize, s.Batch*s.Seq
	// The embedding gather and LayerNorm run in C (engine.Weights.Embed's
	// arithmetic with float32 statistics), writing the bf16 copy as they go.
	C.bq_runner_embed(c, (*C.float)(&w.Word[0]), (*C.float)(&w.Position[0]), (*C.float)(&w.Type[0]),
		(*C.float)(&w.EmbGamma[0]), (*C.float)(&w.EmbBeta[0]),
		(*C.int32_t)(&req.in.InputIDs[0]), (*C.int32_t)(&req.in.TokenTypeIDs[0]))
	mask := unsafe.Slice((*float32)(unsafe.Pointer(C.bq_runner_mask(c))), T)
	for i, v := range req.in.AttentionMask {
		if v != 0 {
			mask[i] = 0
		} else {
			mask[i] = -math.MaxFloat32
		}
	}
	if err := cerr(C.bq_runner_forward(c, req.mode)); err != nil {
		return err
	}
	pooled := unsafe.Slice((*float32)(unsafe.Pointer(C.bq_runner_pooled(c))), s.Batch*H)
	L := s.Labels
	for b := 0; b < s.Batch; b++ {
		p := pooled[b*H : (b+1)*H]
		for l := 0; l < L; l++ {
			acc := r.m.clsB[l]
			for k, v := range p {
				acc += float64(v) * r.m.clsW[k*L+l]
			}
			req.logits[b*L+l] = float32(acc)
		}
	}
	return nil
}

// setSIMD switches the C element-wise kernels between AVX-512 (when the CPU
// has it) and the portable scalar loops; tests compare the two.
func setSIMD(on bool) {
	v := C.int(0)
	if on {
		v = 1
	}
	C.bq_set_simd(v)
}
