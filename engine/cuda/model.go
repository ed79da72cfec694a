package cuda

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

// workspaceBytes is the cuBLASLt workspace each runner offers its matmuls.
const workspaceBytes = 32 << 20

// Indices of a layer's four matmuls.
const (
	opQKV = iota
	opAttnOut
	opFFNIn
	opFFNOut
	numOps
)

type kernels struct {
	embedLN, addLN, gelu, attention, pooler, classifier uintptr
}

// deviceLayer holds one encoder layer's device pointers (LayerNorm in f32).
type deviceLayer struct {
	attnGamma, attnBeta, ffnGamma, ffnBeta uintptr
	ops                                    [numOps]gemmOp
}

type model struct {
	r     *runtimeLibs
	dev   Device
	devID int32
	ctx   uintptr
	set   settings

	spec engine.Spec
	cfg  bert.Config
	act  bert.Activation
	bf16 bool // compute dtype: bf16 matmuls, else fp32
	arch string

	mod uintptr
	fn  kernels

	weights                  uintptr // one allocation for every tensor
	weightBytes              uintptr
	word, pos, typ           uintptr
	embGamma, embBeta        uintptr
	poolW, poolB, clsW, clsB uintptr
	layers                   []deviceLayer
	shapes                   [numOps]*gemmShape
	bare                     [numOps]gemmOp // DEFAULT-epilogue descriptors, for RunGEMMs(false)
	planner                  *gemmPlanner
	ltHandle                 uintptr
	geluInEpilogue           bool // the FFN-in matmul applies (tanh) GELU itself
	attTile, attSmem         int
	alpha, beta              float32 // host-pointer scalars for every matmul
	workspace                uintptr // bytes each runner allocates for cuBLASLt
	mu                       sync.Mutex
	closed                   bool
	runners                  map[*runner]struct{}
}

// enter pins the goroutine to its OS thread and makes the model's context
// current there (CUDA contexts are per thread; goroutines move). Call the
// returned function when done.
func (m *model) enter() (func(), error) {
	runtime.LockOSThread()
	if err := m.r.check("cuCtxSetCurrent", m.r.drv.cuCtxSetCurrent(m.ctx)); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	return runtime.UnlockOSThread, nil
}

// checkShape refuses what the kernels do not handle.
func checkShape(c bert.Config, s engine.Spec) error {
	H, d := c.HiddenSize, c.HeadDim()
	switch {
	case s.Precision != artifact.BF16 && s.Precision != artifact.FP32:
		return fmt.Errorf("%w: %s artifacts (this backend runs bf16 and fp32; compile with --precision bf16)", ErrUnsupported, s.Precision)
	case H > lnMaxWidth:
		return fmt.Errorf("%w: hidden size %d > %d (a LayerNorm row must fit in 48 KiB of shared memory)", ErrUnsupported, H, lnMaxWidth)
	case d > attDMax:
		return fmt.Errorf("%w: head size %d > %d", ErrUnsupported, d, attDMax)
	case s.Batch > 65535:
		return fmt.Errorf("%w: batch %d > 65535 (grid limit)", ErrUnsupported, s.Batch)
	}
	if kt, _ := attentionTile(d); kt == 0 {
		return fmt.Errorf("%w: head size %d leaves no attention tile within 48 KiB", ErrUnsupported, d)
	}
	return nil
}

func load(r *runtimeLibs, dev Device, w *engine.Weights, set settings) (_ engine.Model, err error) {
	if err := checkShape(w.Config, w.Spec); err != nil {
		return nil, err
	}
	m := &model{
		r: r, dev: dev, set: set, spec: w.Spec, cfg: w.Config, act: w.Activation,
		bf16: w.Spec.Precision == artifact.BF16, alpha: 1, beta: 0,
		runners: map[*runner]struct{}{},
	}
	m.attTile, m.attSmem = attentionTile(w.Config.HeadDim())
	m.geluInEpilogue = set.geluEpilogue && w.Activation == bert.GELUTanh

	if err := r.check("cuDeviceGet", r.drv.cuDeviceGet(&m.devID, int32(dev.Index))); err != nil {
		return nil, err
	}
	if err := r.check("cuDevicePrimaryCtxRetain", r.drv.cuDevicePrimaryCtxRetain(&m.ctx, m.devID)); err != nil {
		return nil, err
	}
	leave, err := m.enter()
	if err != nil {
		r.drv.cuDevicePrimaryCtxRelease(m.devID)
		return nil, err
	}
	defer leave()
	defer func() {
		if err != nil {
			m.release()
		}
	}()
	if err := m.loadKernels(); err != nil {
		return nil, err
	}
	if err := m.upload(w); err != nil {
		return nil, err
	}
	if err := m.plan(); err != nil {
		return nil, err
	}
	return m, nil
}

// loadKernels compiles (once per process and architecture) and loads the
// kernels. A CUBIN the driver refuses is retried as PTX.
func (m *model) loadKernels() error {
	r := m.r
	cc := m.dev.Major*10 + m.dev.Minor
	r.mu.Lock()
	c, ok := r.modules[cc]
	r.mu.Unlock()
	if !ok {
		var err error
		if c, err = r.compile(cc); err != nil {
			return err
		}
	}
	err := r.check("cuModuleLoadData", r.drv.cuModuleLoadData(&m.mod, unsafe.Pointer(&c.image[0])))
	if err != nil && strings.HasPrefix(c.arch, "sm_") {
		// The driver refused the CUBIN (older than NVRTC?): try PTX, which
		// it JIT-compiles.
		src, serr := kernelSource()
		if serr != nil {
			return serr
		}
		ptx, cerr := r.compileSource(src, "compute_"+strings.TrimPrefix(c.arch, "sm_"))
		if cerr != nil {
			return fmt.Errorf("%v; PTX fallback: %w", err, cerr)
		}
		if perr := r.check("cuModuleLoadData(PTX)", r.drv.cuModuleLoadData(&m.mod, unsafe.Pointer(&ptx.image[0]))); perr != nil {
			return fmt.Errorf("%v; PTX fallback: %w", err, perr)
		}
		c, err = ptx, nil
	}
	if err != nil {
		return err
	}
	m.arch = c.arch
	r.mu.Lock()
	r.modules[cc] = c
	r.mu.Unlock()

	suffix := "_f32"
	if m.bf16 {
		suffix = "_bf16"
	}
	for _, k := range []struct {
		dst  *uintptr
		name string
	}{
		{&m.fn.embedLN, kEmbedLN + suffix}, {&m.fn.addLN, kAddLN + suffix},
		{&m.fn.gelu, kGELU + suffix}, {&m.fn.attention, kAttention + suffix},
		{&m.fn.pooler, kPooler}, {&m.fn.classifier, kClassifier},
	} {
		if err := r.check("cuModuleGetFunction "+k.name, r.drv.cuModuleGetFunction(k.dst, m.mod, k.name)); err != nil {
			return err
		}
	}
	return nil
}

// uploadList lays tensors out in one device allocation, 256-byte aligned
// (cuBLASLt wants aligned matrices and bias vectors).
type uploadList struct {
	size  uintptr
	items []uploadItem
}

type uploadItem struct {
	dst  *uintptr
	off  uintptr
	data []byte
}

func (u *uploadList) add(dst *uintptr, data []byte) {
	u.size = (u.size + 255) &^ 255
	u.items = append(u.items, uploadItem{dst: dst, off: u.size, data: data})
	u.size += uintptr(len(data))
}

func (u *uploadList) f32(dst *uintptr, v []float32) { u.add(dst, f32Bytes(v)) }

// act adds v in the compute dtype: matrices and matmul biases.
func (u *uploadList) act(dst *uintptr, mx engine.Matrix, v []float32, bf16 bool) {
	switch {
	case bf16 && mx.BF16 != nil:
		u.add(dst, u16Bytes(mx.BF16))
	case bf16 && mx.F32 != nil:
		u.add(dst, u16Bytes(toBF16(mx.F32)))
	case bf16:
		u.add(dst, u16Bytes(toBF16(v)))
	case mx.F32 != nil:
		u.add(dst, f32Bytes(mx.F32))
	case mx.BF16 != nil:
		u.add(dst, f32Bytes(fromBF16(mx.BF16)))
	default:
		u.add(dst, f32Bytes(v))
	}
}

func f32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*4)
}

func u16Bytes(v []uint16) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), len(v)*2)
}

func toBF16(v []float32) []uint16 {
	out := make([]uint16, len(v))
	for i, x := range v {
		out[i] = artifact.ToBF16(x)
	}
	return out
}

func fromBF16(v []uint16) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = artifact.FromBF16(x)
	}
	return out
}

// upload copies every weight to the device once. Matmul biases go in the
// compute dtype (cuBLASLt's BIAS epilogue reads them in D's type: rounding a
// bias to bf16 moves it by at most 2⁻⁹ (0.2 %) of itself, below the bf16
// rounding of the output it is added to); LayerNorm, embeddings, pooler and
// classifier stay f32.
func (m *model) upload(w *engine.Weights) error {
	var u uploadList
	none := engine.Matrix{}
	u.f32(&m.word, w.Word)
	u.f32(&m.pos, w.Position)
	u.f32(&m.typ, w.Type)
	u.f32(&m.embGamma, w.EmbGamma)
	u.f32(&m.embBeta, w.EmbBeta)
	m.layers = make([]deviceLayer, len(w.Layers))
	for l := range w.Layers {
		lw, dl := &w.Layers[l], &m.layers[l]
		mats := [numOps]engine.Matrix{lw.QKV, lw.AttnOut, lw.FFNIn, lw.FFNOut}
		biases := [numOps][]float32{lw.QKVBias, lw.AttnOutBias, lw.FFNInBias, lw.FFNOutBias}
		for op := range numOps {
			u.act(&dl.ops[op].w, mats[op], nil, m.bf16)
			u.act(&dl.ops[op].bias, none, biases[op], m.bf16)
		}
		u.f32(&dl.attnGamma, lw.AttnNormGamma)
		u.f32(&dl.attnBeta, lw.AttnNormBeta)
		u.f32(&dl.ffnGamma, lw.FFNNormGamma)
		u.f32(&dl.ffnBeta, lw.FFNNormBeta)
	}
	u.f32(&m.poolW, w.PoolerW)
	u.f32(&m.poolB, w.PoolerB)
	u.f32(&m.clsW, w.ClassifierW)
	u.f32(&m.clsB, w.ClassifierB)

	if err := m.r.check(fmt.Sprintf("cuMemAlloc_v2(%d weight bytes)", u.size), m.r.drv.cuMemAlloc(&m.weights, u.size)); err != nil {
		return err
	}
	m.weightBytes = u.size
	for _, it := range u.items {
		*it.dst = m.weights + it.off
		if len(it.data) == 0 {
			continue
		}
		if err := m.r.check("cuMemcpyHtoD_v2", m.r.drv.cuMemcpyHtoD(*it.dst, unsafe.Pointer(&it.data[0]), uintptr(len(it.data)))); err != nil {
			return err
		}
	}
	// A copy from pageable memory may return before its DMA lands, and the
	// runners' non-blocking streams do not wait for the legacy stream.
	return m.r.check("cuCtxSynchronize", m.r.drv.cuCtxSynchronize())
}

// plan creates the cuBLASLt descriptors of every layer's matmuls and picks an
// algorithm per shape.
func (m *model) plan() error {
	lt := &m.r.lt
	if err := ltCheck("cublasLtCreate", lt.cublasLtCreate(&m.ltHandle)); err != nil {
		return err
	}
	dtype := int32(cudaR32F)
	if m.bf16 {
		dtype = cudaR16BF
	}
	p := &gemmPlanner{lt: lt, handle: m.ltHandle, dtype: dtype, maxWS: workspaceBytes}
	m.planner = p
	c, s := m.cfg, m.spec
	M, H, I := s.Batch*s.Seq, c.HiddenSize, c.IntermediateSize
	ffnIn := int32(ltEpilogueBias)
	if m.geluInEpilogue {
		ffnIn = ltEpilogueGELUBias
	}
	m.shapes = [numOps]*gemmShape{
		{name: "qkv", m: M, n: 3 * H, k: H, epilogue: ltEpilogueBias},
		{name: "attn_out", m: M, n: H, k: H, epilogue: ltEpilogueBias},
		{name: "ffn_in", m: M, n: I, k: H, epilogue: ffnIn},
		{name: "ffn_out", m: M, n: H, k: I, epilogue: ltEpilogueBias},
	}
	// Layer 0 picks each shape's algorithm. cuBLASLt may lack a GELU_BIAS
	// kernel for a shape or type: then the FFN-in matmul falls back to BIAS
	// and gelu.cu's tanh GELU, which computes the same function.
	for op := range numOps {
		o := &m.layers[0].ops[op]
		o.shape = m.shapes[op]
		d, err := p.desc(o.shape.epilogue, o.bias)
		if err == nil {
			err = p.shape(o.shape, d)
		}
		if err != nil && op == opFFNIn && m.geluInEpilogue {
			m.geluInEpilogue = false
			o.shape.epilogue = ltEpilogueBias
			if d, err = p.desc(o.shape.epilogue, o.bias); err == nil {
				err = p.shape(o.shape, d)
			}
		}
		if err != nil {
			return err
		}
		o.desc = d
	}
	for l := 1; l < len(m.layers); l++ {
		for op := range numOps {
			o := &m.layers[l].ops[op]
			o.shape = m.shapes[op]
			d, err := p.desc(o.shape.epilogue, o.bias)
			if err != nil {
				return err
			}
			o.desc = d
		}
	}
	// Bare matmuls (no epilogue) for the roofline of RunGEMMs(false): one
	// descriptor per shape serves every layer, as it carries no bias.
	for op := range numOps {
		sh := *m.shapes[op]
		sh.name += " (bare)"
		sh.epilogue = ltEpilogueDefault
		d, err := p.desc(ltEpilogueDefault, 0)
		if err != nil {
			return err
		}
		if err := p.shape(&sh, d); err != nil {
			return err
		}
		m.bare[op] = gemmOp{desc: d, shape: &sh}
	}
	for op := range numOps {
		m.workspace = max(m.workspace, m.shapes[op].workspace(), m.bare[op].shape.workspace())
	}
	return nil
}

func (m *model) Spec() engine.Spec { return m.spec }
func (m *model) Backend() string   { return "cuda" }

// Info is one line about the loaded model for logs.
func (m *model) String() string {
	prec := "fp32"
	if m.bf16 {
		prec = "bf16"
	}
	return fmt.Sprintf("cuda %s (%s), %s, batch %d × seq %d, %.0f MiB of weights, graphs %v",
		m.dev.Name, m.arch, prec, m.spec.Batch, m.spec.Seq, float64(m.weightBytes)/(1<<20), m.set.graphs)
}

func (m *model) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	open := make([]*runner, 0, len(m.runners))
	for r := range m.runners {
		open = append(open, r)
	}
	m.mu.Unlock()
	var errs []error
	for _, r := range open {
		errs = append(errs, r.Close())
	}
	leave, err := m.enter()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	defer leave()
	m.release()
	return errors.Join(errs...)
}

// release frees what Load created (the context must be current).
func (m *model) release() {
	r := m.r
	if m.planner != nil {
		m.planner.destroy()
	}
	if m.ltHandle != 0 {
		r.lt.cublasLtDestroy(m.ltHandle)
		m.ltHandle = 0
	}
	if m.weights != 0 {
		r.drv.cuMemFree(m.weights)
		m.weights = 0
	}
	if m.mod != 0 {
		r.drv.cuModuleUnload(m.mod)
		m.mod = 0
	}
	if m.ctx != 0 {
		r.drv.cuDevicePrimaryCtxRelease(m.devID)
		m.ctx = 0
	}
}
