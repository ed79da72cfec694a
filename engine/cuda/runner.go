package cuda

import (
	"errors"
	"fmt"
	"math"
	"unsafe"

	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

// runner is one execution context: a stream, activations on the device,
// pinned host buffers for inputs and logits, and the captured forward.
type runner struct {
	m      *model
	stream uintptr
	lt     uintptr // cuBLASLt handle

	dev     uintptr // one allocation for everything below
	ints    uintptr // [3][n] int32: input_ids, token_type_ids, attention_mask
	x32     uintptr // [n][H] f32 residual stream
	x       uintptr // [n][H] matmul input in the compute dtype (== x32 for fp32)
	qkv     uintptr // [n][3H]
	ctx     uintptr // [n][H]
	tmp     uintptr // [n][H]
	ffn     uintptr // [n][I]
	pooled  uintptr // [B][H] f32
	logits  uintptr // [B][L] f32
	ws      uintptr // cuBLASLt workspace
	wsBytes uintptr

	host       unsafe.Pointer // pinned: ints then logits
	hostInts   []int32
	hostLogits []float32

	graph, exec uintptr
	graphErr    error                            // why capture failed, when it did (runs go on directly)
	gemmGraphs  [2]struct{ graph, exec uintptr } // RunGEMMs(true), RunGEMMs(false)
	warm        bool                             // a direct run has completed
	args        *launchArgs
	closed      bool
}

// Roofliner is the optional interface bertq bench looks for.
var _ interface{ RunGEMMs(postOps bool) error } = (*runner)(nil)

// launchArgs is cuLaunchKernel's kernelParams: an array of pointers to the
// argument values. It lives in the runner (heap, never moved by Go's GC) and
// is reused; the driver copies the values at launch and at capture.
type launchArgs struct {
	vals [16]uint64
	ptrs [16]uintptr
}

// NewRunner allocates a runner's stream and buffers. core is ignored: every
// runner has its own stream, and runners of one process share the device.
func (m *model) NewRunner(int) (engine.Runner, error) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return nil, engine.ErrClosed
	}
	leave, err := m.enter()
	if err != nil {
		return nil, err
	}
	defer leave()
	r := &runner{m: m, args: new(launchArgs)}
	if err := r.alloc(); err != nil {
		r.free()
		return nil, err
	}
	m.mu.Lock()
	m.runners[r] = struct{}{}
	m.mu.Unlock()
	return r, nil
}

// bufferPlan returns each activation buffer's size in bytes, in allocation
// order, for batch×seq tokens.
func bufferPlan(c bert.Config, s engine.Spec, bf16 bool) []uintptr {
	n, H, I := uintptr(s.Batch*s.Seq), uintptr(c.HiddenSize), uintptr(c.IntermediateSize)
	es := uintptr(4)
	x := uintptr(0) // fp32 runs its matmuls on x32 itself
	if bf16 {
		es, x = 2, n*H*2
	}
	return []uintptr{
		3 * n * 4,                     // ints
		n * H * 4,                     // x32
		x,                             // x
		n * 3 * H * es,                // qkv
		n * H * es,                    // ctx
		n * H * es,                    // tmp
		n * I * es,                    // ffn
		uintptr(s.Batch) * H * 4,      // pooled
		uintptr(s.Batch*s.Labels) * 4, // logits
	}
}

func (r *runner) alloc() error {
	m, drv := r.m, &r.m.r.drv
	if err := m.r.check("cuStreamCreate", drv.cuStreamCreate(&r.stream, cuStreamNonBlocking)); err != nil {
		return err
	}
	if err := ltCheck("cublasLtCreate", m.r.lt.cublasLtCreate(&r.lt)); err != nil {
		return err
	}
	sizes := bufferPlan(m.cfg, m.spec, m.bf16)
	r.wsBytes = m.workspace
	var offs []uintptr
	total := uintptr(0)
	for _, sz := range append(sizes, r.wsBytes) {
		total = (total + 255) &^ 255
		offs = append(offs, total)
		total += sz
	}
	if err := m.r.check(fmt.Sprintf("cuMemAlloc_v2(%d activation bytes)", total), drv.cuMemAlloc(&r.dev, total)); err != nil {
		return err
	}
	ptrs := []*uintptr{&r.ints, &r.x32, &r.x, &r.qkv, &r.ctx, &r.tmp, &r.ffn, &r.pooled, &r.logits, &r.ws}
	for i, p := range ptrs {
		*p = r.dev + offs[i]
	}
	if !m.bf16 {
		r.x = r.x32
	}
	if r.wsBytes == 0 {
		r.ws = 0
	}
	n, labels := m.spec.Batch*m.spec.Seq, m.spec.Batch*m.spec.Labels
	hostBytes := uintptr(3*n*4 + labels*4)
	if err := m.r.check("cuMemAllocHost_v2", drv.cuMemAllocHost(&r.host, hostBytes)); err != nil {
		return err
	}
	r.hostInts = unsafe.Slice((*int32)(r.host), 3*n)
	r.hostLogits = unsafe.Slice((*float32)(unsafe.Add(r.host, 3*n*4)), labels)
	return nil
}

// Run executes one static batch.
func (r *runner) Run(in engine.Input, logits []float32) error {
	m := r.m
	if r.closed {
		return engine.ErrClosed
	}
	c, s := m.cfg, m.spec
	if err := engine.Check(s, c.VocabSize, c.TypeVocabSize, in); err != nil {
		return err
	}
	if err := engine.CheckLogits(s, in, logits); err != nil {
		return err
	}
	// Static shapes only, for now: a packed batch runs padded.
	seqs := in.Seqs(s)
	in = engine.Static(s, in)
	n := s.Batch * s.Seq
	copy(r.hostInts[:n], in.InputIDs)
	copy(r.hostInts[n:2*n], in.TokenTypeIDs)
	copy(r.hostInts[2*n:], in.AttentionMask)

	leave, err := m.enter()
	if err != nil {
		return err
	}
	defer leave()
	drv := &m.r.drv
	switch {
	case r.exec != 0:
		if err := m.r.check("cuGraphLaunch", drv.cuGraphLaunch(r.exec, r.stream)); err != nil {
			return err
		}
	default:
		if err := r.forward(); err != nil {
			return err
		}
	}
	if err := m.r.check("cuStreamSynchronize", drv.cuStreamSynchronize(r.stream)); err != nil {
		return err
	}
	copy(logits, r.hostLogits[:seqs*s.Labels])
	if !r.warm {
		// The first run went directly, so lazy initialization (module
		// loading, cuBLASLt kernels) is done; now record the graph.
		r.warm = true
		if m.set.graphs {
			r.graphErr = r.capture()
		}
	}
	return nil
}

// capture records the forward (input copy to logits copy) as a CUDA graph.
func (r *runner) capture() error {
	drv, m := &r.m.r.drv, r.m
	// Relaxed: other runners may allocate while this one captures.
	if err := m.r.check("cuStreamBeginCapture_v2", drv.cuStreamBeginCapture(r.stream, cuCaptureModeRelaxed)); err != nil {
		return err
	}
	ferr := r.forward()
	var graph uintptr
	eerr := m.r.check("cuStreamEndCapture", drv.cuStreamEndCapture(r.stream, &graph))
	if ferr != nil || eerr != nil {
		if graph != 0 {
			drv.cuGraphDestroy(graph)
		}
		return errors.Join(ferr, eerr)
	}
	var exec uintptr
	if err := m.r.check("cuGraphInstantiateWithFlags", drv.cuGraphInstantiateWithFlags(&exec, graph, 0)); err != nil {
		drv.cuGraphDestroy(graph)
		return err
	}
	r.graph, r.exec = graph, exec
	return nil
}

// forward enqueues the whole forward on the runner's stream.
func (r *runner) forward() error {
	m := r.m
	drv := &m.r.drv
	c, s := m.cfg, m.spec
	n, H, I, S := s.Batch*s.Seq, c.HiddenSize, c.IntermediateSize, s.Seq
	eps := float32(c.LayerNormEps)
	ids, types, mask := r.ints, r.ints+uintptr(n*4), r.ints+uintptr(2*n*4)

	if err := m.r.check("cuMemcpyHtoDAsync_v2", drv.cuMemcpyHtoDAsync(r.ints, r.host, uintptr(3*n*4), r.stream)); err != nil {
		return err
	}
	lnThreads := lnBlock(H)
	if err := r.launch("embed_ln", m.fn.embedLN, [3]uint32{uint32(n), 1, 1}, lnThreads, H*4,
		ids, types, m.word, m.pos, m.typ, m.embGamma, m.embBeta, r.x32, r.x, int32(S), int32(H), eps); err != nil {
		return err
	}
	d := c.HeadDim()
	qBlocks := (S + attWarps*attQW - 1) / (attWarps * attQW)
	for l := range m.layers {
		ly := &m.layers[l]
		if err := r.gemm(&ly.ops[opQKV], r.x, r.qkv); err != nil {
			return err
		}
		if err := r.launch("attention", m.fn.attention, [3]uint32{uint32(qBlocks), uint32(c.NumHeads), uint32(s.Batch)}, attWarps*32, m.attSmem,
			r.qkv, mask, r.ctx, int32(S), int32(H), int32(d), int32(m.attTile)); err != nil {
			return err
		}
		if err := r.gemm(&ly.ops[opAttnOut], r.ctx, r.tmp); err != nil {
			return err
		}
		if err := r.launch("add_ln", m.fn.addLN, [3]uint32{uint32(n), 1, 1}, lnThreads, H*4,
			r.x32, r.tmp, ly.attnGamma, ly.attnBeta, r.x, int32(H), eps); err != nil {
			return err
		}
		if err := r.gemm(&ly.ops[opFFNIn], r.x, r.ffn); err != nil {
			return err
		}
		if !m.geluInEpilogue {
			total := int64(n) * int64(I)
			if err := r.launch("gelu", m.fn.gelu, [3]uint32{elementwiseBlocks(total), 1, 1}, 256, 0,
				r.ffn, total, geluKind(m.act)); err != nil {
				return err
			}
		}
		if err := r.gemm(&ly.ops[opFFNOut], r.ffn, r.tmp); err != nil {
			return err
		}
		if err := r.launch("add_ln", m.fn.addLN, [3]uint32{uint32(n), 1, 1}, lnThreads, H*4,
			r.x32, r.tmp, ly.ffnGamma, ly.ffnBeta, r.x, int32(H), eps); err != nil {
			return err
		}
	}
	if err := r.launch("pooler", m.fn.pooler, [3]uint32{uint32((H + 127) / 128), uint32(s.Batch), 1}, 128, H*4,
		r.x32, m.poolW, m.poolB, r.pooled, int32(S), int32(H)); err != nil {
		return err
	}
	if err := r.launch("classifier", m.fn.classifier, [3]uint32{uint32(s.Batch), 1, 1}, 256, 0,
		r.pooled, m.clsW, m.clsB, r.logits, int32(H), int32(s.Labels)); err != nil {
		return err
	}
	logitBytes := uintptr(s.Batch * s.Labels * 4)
	return m.r.check("cuMemcpyDtoHAsync_v2", drv.cuMemcpyDtoHAsync(unsafe.Pointer(&r.hostLogits[0]), r.logits, logitBytes, r.stream))
}

// gemm runs out = in·W + bias (and GELU, per the op's epilogue).
func (r *runner) gemm(op *gemmOp, in, out uintptr) error {
	return r.matmul(op.desc, op.shape, op.w, in, out)
}

func (r *runner) matmul(desc uintptr, sh *gemmShape, w, in, out uintptr) error {
	m := r.m
	res := m.r.lt.cublasLtMatmul(r.lt, desc, unsafe.Pointer(&m.alpha), w, sh.a, in, sh.b,
		unsafe.Pointer(&m.beta), out, sh.d, out, sh.d, sh.algo(), r.ws, r.wsBytes, r.stream)
	if err := ltCheck("cublasLtMatmul "+sh.name, res); err != nil {
		return err
	}
	return nil
}

// RunGEMMs executes only the encoder matmuls of one forward, on the runner's
// own (stale) buffers, with the same shapes, precision and algorithms:
// postOps true with their bias (and GELU) epilogues, false bare. Benchmarks
// compare its rate with the forward's to see what the other kernels cost
// (the same contract as engine/onednn's Roofliner). Like Run, the first call
// of each kind runs directly and captures a graph that later calls replay.
func (r *runner) RunGEMMs(postOps bool) error {
	if r.closed {
		return engine.ErrClosed
	}
	m := r.m
	leave, err := m.enter()
	if err != nil {
		return err
	}
	defer leave()
	drv := &m.r.drv
	g := &r.gemmGraphs[0]
	if !postOps {
		g = &r.gemmGraphs[1]
	}
	enqueue := func() error {
		for l := range m.layers {
			ly := &m.layers[l]
			ins := [numOps]uintptr{r.x, r.ctx, r.x, r.ffn}
			outs := [numOps]uintptr{r.qkv, r.tmp, r.ffn, r.tmp}
			for op := range numOps {
				var err error
				if postOps {
					err = r.gemm(&ly.ops[op], ins[op], outs[op])
				} else {
					err = r.matmul(m.bare[op].desc, m.bare[op].shape, ly.ops[op].w, ins[op], outs[op])
				}
				if err != nil {
					return err
				}
			}
		}
		return nil
	}
	if g.exec != 0 {
		if err := m.r.check("cuGraphLaunch", drv.cuGraphLaunch(g.exec, r.stream)); err != nil {
			return err
		}
		return m.r.check("cuStreamSynchronize", drv.cuStreamSynchronize(r.stream))
	}
	if err := enqueue(); err != nil {
		return err
	}
	if err := m.r.check("cuStreamSynchronize", drv.cuStreamSynchronize(r.stream)); err != nil {
		return err
	}
	if m.set.graphs {
		if err := m.r.check("cuStreamBeginCapture_v2", drv.cuStreamBeginCapture(r.stream, cuCaptureModeRelaxed)); err != nil {
			return nil // the direct run counted; later calls run directly too
		}
		ferr := enqueue()
		var graph, exec uintptr
		eerr := m.r.check("cuStreamEndCapture", drv.cuStreamEndCapture(r.stream, &graph))
		if ferr == nil && eerr == nil && drv.cuGraphInstantiateWithFlags(&exec, graph, 0) == 0 {
			g.graph, g.exec = graph, exec
		} else if graph != 0 {
			drv.cuGraphDestroy(graph)
		}
	}
	return nil
}

// launch packs args (uintptr device pointers, int32, int64, float32) into
// kernelParams and launches fn with a 1-D block.
func (r *runner) launch(name string, fn uintptr, grid [3]uint32, block, smem int, args ...any) error {
	a := r.args
	if len(args) > len(a.vals) {
		return fmt.Errorf("%s: %d kernel arguments, at most %d", name, len(args), len(a.vals))
	}
	for i, v := range args {
		a.vals[i] = 0
		switch x := v.(type) {
		case uintptr:
			a.vals[i] = uint64(x)
		case int32:
			*(*int32)(unsafe.Pointer(&a.vals[i])) = x
		case int64:
			a.vals[i] = uint64(x)
		case float32:
			*(*uint32)(unsafe.Pointer(&a.vals[i])) = math.Float32bits(x)
		default:
			return fmt.Errorf("%s: kernel argument %d has unsupported type %T", name, i, v)
		}
		a.ptrs[i] = uintptr(unsafe.Pointer(&a.vals[i]))
	}
	res := r.m.r.drv.cuLaunchKernel(fn, grid[0], grid[1], grid[2], uint32(block), 1, 1, uint32(smem), r.stream, unsafe.Pointer(&a.ptrs[0]), nil)
	return r.m.r.check("cuLaunchKernel "+name, res)
}

// lnBlock is the LayerNorm block size: a warp multiple, at most 256.
func lnBlock(h int) int { return min(256, (h+31)/32*32) }

// elementwiseBlocks sizes a grid-stride loop of 256-thread blocks.
func elementwiseBlocks(n int64) uint32 { return uint32(min((n+255)/256, 1<<16)) }

func geluKind(a bert.Activation) int32 {
	switch a {
	case bert.GELUTanh:
		return 1
	case bert.GELUCrude:
		return 2
	}
	return 0
}

func (r *runner) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	m := r.m
	m.mu.Lock()
	delete(m.runners, r)
	m.mu.Unlock()
	leave, err := m.enter()
	if err != nil {
		return err
	}
	defer leave()
	return r.free()
}

// free releases the runner's resources (the context must be current).
func (r *runner) free() error {
	drv := &r.m.r.drv
	var errs []error
	if r.stream != 0 {
		errs = append(errs, r.m.r.check("cuStreamSynchronize", drv.cuStreamSynchronize(r.stream)))
	}
	if r.exec != 0 {
		drv.cuGraphExecDestroy(r.exec)
		r.exec = 0
	}
	if r.graph != 0 {
		drv.cuGraphDestroy(r.graph)
		r.graph = 0
	}
	for i := range r.gemmGraphs {
		if g := &r.gemmGraphs[i]; g.exec != 0 {
			drv.cuGraphExecDestroy(g.exec)
			drv.cuGraphDestroy(g.graph)
			g.graph, g.exec = 0, 0
		}
	}
	if r.host != nil {
		drv.cuMemFreeHost(r.host)
		r.host, r.hostInts, r.hostLogits = nil, nil, nil
	}
	if r.dev != 0 {
		drv.cuMemFree(r.dev)
		r.dev = 0
	}
	if r.lt != 0 {
		r.m.r.lt.cublasLtDestroy(r.lt)
		r.lt = 0
	}
	if r.stream != 0 {
		drv.cuStreamDestroy(r.stream)
		r.stream = 0
	}
	return errors.Join(errs...)
}
