package cuda

import (
	"errors"
	"strings"
	"testing"
)

func TestErrorFormatting(t *testing.T) {
	cases := []struct {
		err      error
		want     string
		sentinel error
	}{
		{&driverError{call: "cuMemAlloc_v2", code: 2, desc: "out of memory"}, "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory", ErrDriver},
		{&driverError{call: "cuInit", code: 100}, "cuInit: CUDA_ERROR_NO_DEVICE (100)", ErrDriver},
		{&driverError{call: "cuX", code: 12345}, "cuX: CUresult (12345)", ErrDriver},
		{&nvrtcError{call: "nvrtcCompileProgram", code: 6, log: "kernels.cu(3): error: x"}, "nvrtcCompileProgram: NVRTC_ERROR_COMPILATION (6):\nkernels.cu(3): error: x", ErrNVRTC},
		{&cublasError{call: "cublasLtMatmul qkv", code: 15}, "cublasLtMatmul qkv: CUBLAS_STATUS_NOT_SUPPORTED (15)", ErrCublas},
	}
	for _, c := range cases {
		if c.err.Error() != c.want {
			t.Errorf("got %q, want %q", c.err, c.want)
		}
		if !errors.Is(c.err, c.sentinel) {
			t.Errorf("%q does not wrap %v", c.err, c.sentinel)
		}
	}
	if (&driverError{code: 2}).Code() != 2 {
		t.Error("Code")
	}
	if err := ltCheck("x", 0); err != nil {
		t.Error(err)
	}
	if err := ltCheck("cublasLtCreate", 1); err == nil || !strings.Contains(err.Error(), "NOT_INITIALIZED") {
		t.Error(err)
	}
	r := &runtimeLibs{} // no driver bound: the table names the code
	if err := r.check("cuInit", 3); err == nil || err.Error() != "cuInit: CUDA_ERROR_NOT_INITIALIZED (3)" {
		t.Errorf("got %v", err)
	}
}

func TestCString(t *testing.T) {
	b := []byte("hello\x00world")
	if got := cString(&b[0]); got != "hello" {
		t.Errorf("got %q", got)
	}
	if cString(nil) != "" {
		t.Error("nil")
	}
}
