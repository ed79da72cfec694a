package cuda

import (
	"fmt"
	"runtime"
	"sort"
	"strings"
	"unsafe"
)

// compiled is a kernel image for the driver: a CUBIN for the device's exact
// architecture, or PTX for the newest one NVRTC knows that the device can
// run (the driver JIT-compiles it).
type compiled struct {
	image []byte
	arch  string // sm_90 or compute_80
	log   string
}

// pickArch chooses the target for a device of compute capability cc (e.g. 90)
// among the architectures NVRTC supports: the exact sm_XY when listed, else
// PTX for the newest compute_XY ≤ cc.
func pickArch(cc int, supported []int) (string, error) {
	best := 0
	for _, a := range supported {
		if a == cc {
			return fmt.Sprintf("sm_%d", cc), nil
		}
		if a < cc && a > best {
			best = a
		}
	}
	if best == 0 {
		return "", fmt.Errorf("%w: NVRTC supports %v, none at or below the device's sm_%d", ErrUnsupported, supported, cc)
	}
	return fmt.Sprintf("compute_%d", best), nil
}

// nvrtcOptions are the compile options for arch. Not --use_fast_math: the
// erf GELU, expf in softmax and the LayerNorm division must stay accurate.
func nvrtcOptions(arch string) []string {
	return []string{"--gpu-architecture=" + arch, "-default-device", "-DBERTQ_KERNELS=1"}
}

func (r *runtimeLibs) supportedArchs() ([]int, error) {
	var n int32
	if res := r.nv.nvrtcGetNumSupported(&n); res != 0 {
		return nil, &nvrtcError{call: "nvrtcGetNumSupportedArchs", code: res}
	}
	if n <= 0 {
		return nil, nil
	}
	archs := make([]int32, n)
	if res := r.nv.nvrtcGetSupportedArchs(&archs[0]); res != 0 {
		return nil, &nvrtcError{call: "nvrtcGetSupportedArchs", code: res}
	}
	out := make([]int, n)
	for i, a := range archs {
		out[i] = int(a)
	}
	sort.Ints(out)
	return out, nil
}

// compile builds the embedded kernels for compute capability cc.
func (r *runtimeLibs) compile(cc int) (*compiled, error) {
	archs, err := r.supportedArchs()
	if err != nil {
		return nil, err
	}
	arch, err := pickArch(cc, archs)
	if err != nil {
		return nil, err
	}
	src, err := kernelSource()
	if err != nil {
		return nil, err
	}
	return r.compileSource(src, arch)
}

func (r *runtimeLibs) compileSource(src, arch string) (*compiled, error) {
	var prog uintptr
	if res := r.nv.nvrtcCreateProgram(&prog, src, "bertq_kernels.cu", 0, nil, nil); res != 0 {
		return nil, &nvrtcError{call: "nvrtcCreateProgram", code: res}
	}
	defer r.nv.nvrtcDestroyProgram(&prog)

	opts := nvrtcOptions(arch)
	cstrs := make([][]byte, len(opts))
	ptrs := make([]*byte, len(opts))
	for i, o := range opts {
		cstrs[i] = append([]byte(o), 0)
		ptrs[i] = &cstrs[i][0]
	}
	res := r.nv.nvrtcCompileProgram(prog, int32(len(ptrs)), unsafe.Pointer(&ptrs[0]))
	runtime.KeepAlive(cstrs)
	log := r.programLog(prog)
	if res != 0 {
		return nil, &nvrtcError{call: "nvrtcCompileProgram " + strings.Join(opts, " "), code: res, log: log}
	}
	out := &compiled{arch: arch, log: log}
	var size uintptr
	if strings.HasPrefix(arch, "sm_") {
		if res := r.nv.nvrtcGetCUBINSize(prog, &size); res != 0 {
			return nil, &nvrtcError{call: "nvrtcGetCUBINSize", code: res}
		}
		out.image = make([]byte, size)
		if size > 0 {
			if res := r.nv.nvrtcGetCUBIN(prog, unsafe.Pointer(&out.image[0])); res != 0 {
				return nil, &nvrtcError{call: "nvrtcGetCUBIN", code: res}
			}
		}
	} else {
		if res := r.nv.nvrtcGetPTXSize(prog, &size); res != 0 {
			return nil, &nvrtcError{call: "nvrtcGetPTXSize", code: res}
		}
		out.image = make([]byte, size) // includes the terminating NUL the driver needs
		if size > 0 {
			if res := r.nv.nvrtcGetPTX(prog, unsafe.Pointer(&out.image[0])); res != 0 {
				return nil, &nvrtcError{call: "nvrtcGetPTX", code: res}
			}
		}
	}
	if len(out.image) == 0 {
		return nil, fmt.Errorf("%w: NVRTC produced an empty %s image", ErrNVRTC, arch)
	}
	return out, nil
}

func (r *runtimeLibs) programLog(prog uintptr) string {
	var size uintptr
	if r.nv.nvrtcGetProgramLogSize(prog, &size) != 0 || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if r.nv.nvrtcGetProgramLog(prog, unsafe.Pointer(&buf[0])) != 0 {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00\n ")
}
