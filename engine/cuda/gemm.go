package cuda

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Matmuls run on cuBLASLt. The engine's activations are row-major [M][K]
// and its weights row-major [K][N]; cuBLASLt is column-major, so each product
// Y[M][N] = X·W + b is computed as its transpose, Yᵀ (N×M) = Wᵀ (N×K) · Xᵀ
// (K×M), where each row-major buffer read column-major already is that
// transpose: no copies and no transposition flags. The bias is a vector over
// D's rows (the N output features), the BIAS epilogue's broadcast.

// gemmShape is one problem size with its layouts and chosen algorithm,
// shared by every layer (all layers have the same shapes).
type gemmShape struct {
	name     string
	m, n, k  int
	epilogue int32
	a, b, d  uintptr // matrix layouts
	result   [ltHeuristicResultSize]byte
}

func (s *gemmShape) algo() unsafe.Pointer { return unsafe.Pointer(&s.result[0]) }

// workspace is the heuristic's workspaceSize (after the 64-byte algo).
func (s *gemmShape) workspace() uintptr {
	return uintptr(binary.LittleEndian.Uint64(s.result[ltAlgoSize:]))
}

// gemmOp is one layer's matmul: its descriptor carries its bias pointer, so
// descriptors are per layer and immutable after Load (runners share them).
type gemmOp struct {
	desc    uintptr
	w, bias uintptr
	shape   *gemmShape
}

// gemmDims returns cuBLASLt's (rows, cols, ld) for A (the weight), B (the
// activations) and D (the output) of Y[M][N] = X[M][K]·W[K][N].
func gemmDims(m, n, k int) (a, b, d [3]int64) {
	return [3]int64{int64(n), int64(k), int64(n)},
		[3]int64{int64(k), int64(m), int64(k)},
		[3]int64{int64(n), int64(m), int64(n)}
}

type gemmPlanner struct {
	lt      *cublasLtAPI
	handle  uintptr
	dtype   int32 // cudaR16BF or cudaR32F: A, B, C, D and the bias
	maxWS   uint64
	layouts []uintptr
	descs   []uintptr
	pref    uintptr
}

func (p *gemmPlanner) layout(rows, cols, ld int64) (uintptr, error) {
	var l uintptr
	if err := ltCheck("cublasLtMatrixLayoutCreate", p.lt.cublasLtMatrixLayoutCreate(&l, p.dtype, uint64(rows), uint64(cols), ld)); err != nil {
		return 0, err
	}
	p.layouts = append(p.layouts, l)
	return l, nil
}

func (p *gemmPlanner) setAttr(desc uintptr, attr int32, v unsafe.Pointer, size uintptr) error {
	return ltCheck(fmt.Sprintf("cublasLtMatmulDescSetAttribute(%d)", attr), p.lt.cublasLtMatmulDescSetAttribute(desc, attr, v, size))
}

// desc makes a matmul descriptor: fp32 accumulation and scale, no transposes,
// the given epilogue with bias.
func (p *gemmPlanner) desc(epilogue int32, bias uintptr) (uintptr, error) {
	var d uintptr
	if err := ltCheck("cublasLtMatmulDescCreate", p.lt.cublasLtMatmulDescCreate(&d, cublasCompute32F, cudaR32F)); err != nil {
		return 0, err
	}
	p.descs = append(p.descs, d)
	op := int32(cublasOpN)
	if err := p.setAttr(d, ltDescTransA, unsafe.Pointer(&op), 4); err != nil {
		return 0, err
	}
	if err := p.setAttr(d, ltDescTransB, unsafe.Pointer(&op), 4); err != nil {
		return 0, err
	}
	ep := epilogue
	if err := p.setAttr(d, ltDescEpilogue, unsafe.Pointer(&ep), 4); err != nil {
		return 0, err
	}
	if epilogue != ltEpilogueDefault {
		b := bias
		if err := p.setAttr(d, ltDescBiasPointer, unsafe.Pointer(&b), unsafe.Sizeof(b)); err != nil {
			return 0, err
		}
	}
	return d, nil
}

// shape creates the layouts of one problem size and asks the heuristic for
// an algorithm, using desc (one layer's descriptor of that shape).
func (p *gemmPlanner) shape(s *gemmShape, desc uintptr) error {
	ad, bd, dd := gemmDims(s.m, s.n, s.k)
	var err error
	if s.a, err = p.layout(ad[0], ad[1], ad[2]); err != nil {
		return err
	}
	if s.b, err = p.layout(bd[0], bd[1], bd[2]); err != nil {
		return err
	}
	if s.d, err = p.layout(dd[0], dd[1], dd[2]); err != nil {
		return err
	}
	if p.pref == 0 {
		if err := ltCheck("cublasLtMatmulPreferenceCreate", p.lt.cublasLtMatmulPreferenceCreate(&p.pref)); err != nil {
			return err
		}
		ws := p.maxWS
		if err := ltCheck("cublasLtMatmulPreferenceSetAttribute", p.lt.cublasLtMatmulPreferenceSetAttr(p.pref, ltPrefMaxWorkspace, unsafe.Pointer(&ws), 8)); err != nil {
			return err
		}
	}
	var count int32
	res := p.lt.cublasLtMatmulAlgoGetHeuristic(p.handle, desc, s.a, s.b, s.d, s.d, p.pref, 1, unsafe.Pointer(&s.result[0]), &count)
	if err := ltCheck("cublasLtMatmulAlgoGetHeuristic", res); err != nil {
		return fmt.Errorf("%s matmul M=%d N=%d K=%d epilogue %d: %w", s.name, s.m, s.n, s.k, s.epilogue, err)
	}
	if count < 1 {
		return fmt.Errorf("%w: no cuBLASLt algorithm for the %s matmul M=%d N=%d K=%d epilogue %d", ErrCublas, s.name, s.m, s.n, s.k, s.epilogue)
	}
	return nil
}

// destroy releases every descriptor, layout and preference the planner made.
func (p *gemmPlanner) destroy() {
	for _, d := range p.descs {
		p.lt.cublasLtMatmulDescDestroy(d)
	}
	for _, l := range p.layouts {
		p.lt.cublasLtMatrixLayoutDestroy(l)
	}
	if p.pref != 0 {
		p.lt.cublasLtMatmulPreferenceDestroy(p.pref)
	}
	p.descs, p.layouts, p.pref = nil, nil, 0
}
