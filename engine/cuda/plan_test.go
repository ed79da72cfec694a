package cuda

import (
	"errors"
	"testing"
	"unsafe"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/engine"
)

func TestGemmDims(t *testing.T) {
	// Y[M=512][N=3072] = X[512][1024]·W[1024][3072], read column-major.
	a, b, d := gemmDims(512, 3072, 1024)
	if a != [3]int64{3072, 1024, 3072} || b != [3]int64{1024, 512, 1024} || d != [3]int64{3072, 512, 3072} {
		t.Errorf("a %v b %v d %v", a, b, d)
	}
}

func TestBufferPlan(t *testing.T) {
	c := bert.Large()
	s := engine.Spec{Batch: 4, Seq: 128, Labels: 2}
	n := uintptr(512)
	bf := bufferPlan(c, s, true)
	want := []uintptr{3 * n * 4, n * 1024 * 4, n * 1024 * 2, n * 3072 * 2, n * 1024 * 2, n * 1024 * 2, n * 4096 * 2, 4 * 1024 * 4, 4 * 2 * 4}
	if len(bf) != len(want) {
		t.Fatalf("got %v", bf)
	}
	for i := range want {
		if bf[i] != want[i] {
			t.Errorf("bf16 buffer %d: %d bytes, want %d", i, bf[i], want[i])
		}
	}
	f := bufferPlan(c, s, false)
	if f[2] != 0 || f[3] != n*3072*4 {
		t.Errorf("fp32 plan %v: no separate matmul input, fp32 activations", f)
	}
}

func TestUploadListAlignsAndConverts(t *testing.T) {
	var u uploadList
	var p1, p2, p3 uintptr
	u.f32(&p1, []float32{1, 2, 3})
	mx := engine.Matrix{K: 1, N: 2, F32: []float32{1.5, -2}}
	u.act(&p2, mx, nil, true)
	u.act(&p3, engine.Matrix{}, []float32{0.25}, false)
	if len(u.items) != 3 {
		t.Fatal(len(u.items))
	}
	for _, it := range u.items {
		if it.off%256 != 0 {
			t.Errorf("offset %d not 256-aligned", it.off)
		}
	}
	if got := unsafe.Slice((*uint16)(unsafe.Pointer(&u.items[1].data[0])), 2); got[0] != artifact.ToBF16(1.5) || got[1] != artifact.ToBF16(-2) {
		t.Errorf("f32 matrix not rounded to bf16: %v", got)
	}
	if len(u.items[2].data) != 4 {
		t.Errorf("fp32 bias: %d bytes", len(u.items[2].data))
	}
	if u.size != 512+4 {
		t.Errorf("size %d", u.size)
	}
	// bf16 stored matrices widen exactly for fp32 runs.
	var p4 uintptr
	u.act(&p4, engine.Matrix{BF16: []uint16{artifact.ToBF16(3)}}, nil, false)
	if v := *(*float32)(unsafe.Pointer(&u.items[3].data[0])); v != 3 {
		t.Errorf("widened %v", v)
	}
}

func TestLaunchGeometry(t *testing.T) {
	for h, want := range map[int]int{64: 64, 100: 128, 1024: 256, 4096: 256} {
		if got := lnBlock(h); got != want {
			t.Errorf("lnBlock(%d) = %d, want %d", h, got, want)
		}
	}
	if elementwiseBlocks(1) != 1 || elementwiseBlocks(257) != 2 || elementwiseBlocks(1<<40) != 1<<16 {
		t.Error("elementwiseBlocks")
	}
	if geluKind(bert.GELUExact) != 0 || geluKind(bert.GELUTanh) != 1 || geluKind(bert.GELUCrude) != 2 {
		t.Error("geluKind must match gelu.cu")
	}
}

func TestCheckShape(t *testing.T) {
	c := bert.Large()
	s := engine.Spec{Batch: 256, Seq: 512, Labels: 2, Precision: artifact.BF16}
	if err := checkShape(c, s); err != nil {
		t.Errorf("BERT-Large at 256×512: %v", err)
	}
	s.Precision = artifact.INT8
	if err := checkShape(c, s); !errors.Is(err, ErrUnsupported) {
		t.Errorf("int8: %v", err)
	}
	s.Precision = artifact.BF16
	c.NumHeads = 4 // head size 256
	if err := checkShape(c, s); !errors.Is(err, ErrUnsupported) {
		t.Errorf("head size 256: %v", err)
	}
	c = bert.Large()
	c.HiddenSize, c.NumHeads = 16384, 128
	if err := checkShape(c, s); !errors.Is(err, ErrUnsupported) {
		t.Errorf("hidden 16384: %v", err)
	}
}

// With cuBLASLt present (even without a GPU), the host-side descriptor calls
// run for real: the signatures and attribute sizes are checked by the library.
func testGemmDescriptors(t *testing.T) {
	r := libs()
	if r.status.CublasLt.Err != nil {
		t.Skipf("cuBLASLt not found, descriptors not created here: %v", r.status.CublasLt.Err)
	}
	for _, dtype := range []int32{cudaR16BF, cudaR32F} {
		p := &gemmPlanner{lt: &r.lt, dtype: dtype, maxWS: workspaceBytes}
		for _, ep := range []int32{ltEpilogueDefault, ltEpilogueBias, ltEpilogueGELUBias} {
			if _, err := p.desc(ep, 0x1000); err != nil {
				t.Errorf("dtype %d epilogue %d: %v", dtype, ep, err)
			}
		}
		a, b, d := gemmDims(512, 4096, 1024)
		for _, l := range [][3]int64{a, b, d} {
			if _, err := p.layout(l[0], l[1], l[2]); err != nil {
				t.Error(err)
			}
		}
		if len(p.descs) != 3 || len(p.layouts) != 3 {
			t.Errorf("%d descs, %d layouts", len(p.descs), len(p.layouts))
		}
		p.destroy()
	}
}
