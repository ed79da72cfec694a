package cuda

import (
	"fmt"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The C signatures below are bound with purego. Conventions: handles and
// device pointers (CUdeviceptr is 64-bit) are uintptr, size_t is uintptr, C
// enums and int are int32, unsigned int is uint32, host buffers handed to the
// library for the duration of one call are unsafe.Pointer, out-parameters are
// Go pointers. Scalars alpha/beta travel by host pointer (cuBLASLt's default
// host pointer mode).

// driverAPI is the CUDA driver API subset the backend uses (libcuda.so.1).
type driverAPI struct {
	cuInit                      func(flags uint32) cuResult
	cuDriverGetVersion          func(version *int32) cuResult
	cuDeviceGetCount            func(count *int32) cuResult
	cuDeviceGet                 func(dev *int32, ordinal int32) cuResult
	cuDeviceGetName             func(name *byte, size int32, dev int32) cuResult
	cuDeviceGetAttribute        func(value *int32, attr int32, dev int32) cuResult
	cuDeviceTotalMem            func(bytes *uintptr, dev int32) cuResult
	cuDevicePrimaryCtxRetain    func(ctx *uintptr, dev int32) cuResult
	cuDevicePrimaryCtxRelease   func(dev int32) cuResult
	cuCtxSetCurrent             func(ctx uintptr) cuResult
	cuCtxSynchronize            func() cuResult
	cuMemAlloc                  func(dptr *uintptr, size uintptr) cuResult
	cuMemFree                   func(dptr uintptr) cuResult
	cuMemcpyHtoD                func(dst uintptr, src unsafe.Pointer, size uintptr) cuResult
	cuMemcpyHtoDAsync           func(dst uintptr, src unsafe.Pointer, size uintptr, stream uintptr) cuResult
	cuMemcpyDtoHAsync           func(dst unsafe.Pointer, src uintptr, size uintptr, stream uintptr) cuResult
	cuMemsetD8Async             func(dst uintptr, value uint8, n uintptr, stream uintptr) cuResult
	cuMemAllocHost              func(p *unsafe.Pointer, size uintptr) cuResult
	cuMemFreeHost               func(p unsafe.Pointer) cuResult
	cuStreamCreate              func(stream *uintptr, flags uint32) cuResult
	cuStreamSynchronize         func(stream uintptr) cuResult
	cuStreamDestroy             func(stream uintptr) cuResult
	cuModuleLoadData            func(mod *uintptr, image unsafe.Pointer) cuResult
	cuModuleUnload              func(mod uintptr) cuResult
	cuModuleGetFunction         func(fn *uintptr, mod uintptr, name string) cuResult
	cuLaunchKernel              func(fn uintptr, gx, gy, gz, bx, by, bz, sharedBytes uint32, stream uintptr, params unsafe.Pointer, extra unsafe.Pointer) cuResult
	cuStreamBeginCapture        func(stream uintptr, mode int32) cuResult
	cuStreamEndCapture          func(stream uintptr, graph *uintptr) cuResult
	cuGraphInstantiateWithFlags func(exec *uintptr, graph uintptr, flags uint64) cuResult
	cuGraphLaunch               func(exec uintptr, stream uintptr) cuResult
	cuGraphExecDestroy          func(exec uintptr) cuResult
	cuGraphDestroy              func(graph uintptr) cuResult
	cuGetErrorString            func(code cuResult, str **byte) cuResult
	cuGetErrorName              func(code cuResult, str **byte) cuResult
}

func (d *driverAPI) table() []binding {
	return []binding{
		{"cuInit", &d.cuInit},
		{"cuDriverGetVersion", &d.cuDriverGetVersion},
		{"cuDeviceGetCount", &d.cuDeviceGetCount},
		{"cuDeviceGet", &d.cuDeviceGet},
		{"cuDeviceGetName", &d.cuDeviceGetName},
		{"cuDeviceGetAttribute", &d.cuDeviceGetAttribute},
		{"cuDeviceTotalMem_v2", &d.cuDeviceTotalMem},
		{"cuDevicePrimaryCtxRetain", &d.cuDevicePrimaryCtxRetain},
		{"cuDevicePrimaryCtxRelease_v2", &d.cuDevicePrimaryCtxRelease},
		{"cuCtxSetCurrent", &d.cuCtxSetCurrent},
		{"cuCtxSynchronize", &d.cuCtxSynchronize},
		{"cuMemAlloc_v2", &d.cuMemAlloc},
		{"cuMemFree_v2", &d.cuMemFree},
		{"cuMemcpyHtoD_v2", &d.cuMemcpyHtoD},
		{"cuMemcpyHtoDAsync_v2", &d.cuMemcpyHtoDAsync},
		{"cuMemcpyDtoHAsync_v2", &d.cuMemcpyDtoHAsync},
		{"cuMemsetD8Async", &d.cuMemsetD8Async},
		{"cuMemAllocHost_v2", &d.cuMemAllocHost},
		{"cuMemFreeHost", &d.cuMemFreeHost},
		{"cuStreamCreate", &d.cuStreamCreate},
		{"cuStreamSynchronize", &d.cuStreamSynchronize},
		{"cuStreamDestroy_v2", &d.cuStreamDestroy},
		{"cuModuleLoadData", &d.cuModuleLoadData},
		{"cuModuleUnload", &d.cuModuleUnload},
		{"cuModuleGetFunction", &d.cuModuleGetFunction},
		{"cuLaunchKernel", &d.cuLaunchKernel},
		{"cuStreamBeginCapture_v2", &d.cuStreamBeginCapture},
		{"cuStreamEndCapture", &d.cuStreamEndCapture},
		{"cuGraphInstantiateWithFlags", &d.cuGraphInstantiateWithFlags},
		{"cuGraphLaunch", &d.cuGraphLaunch},
		{"cuGraphExecDestroy", &d.cuGraphExecDestroy},
		{"cuGraphDestroy", &d.cuGraphDestroy},
		{"cuGetErrorString", &d.cuGetErrorString},
		{"cuGetErrorName", &d.cuGetErrorName},
	}
}

// Driver API constants (cuda.h).
const (
	cuDevAttrMaxSharedPerBlock = 8
	cuDevAttrMultiprocessors   = 16
	cuDevAttrCCMajor           = 75
	cuDevAttrCCMinor           = 76
	cuStreamNonBlocking        = 1
	cuCaptureModeRelaxed       = 2
)

// nvrtcAPI is the NVRTC subset (libnvrtc.so.*).
type nvrtcAPI struct {
	nvrtcVersion           func(major, minor *int32) nvrtcResult
	nvrtcGetNumSupported   func(n *int32) nvrtcResult
	nvrtcGetSupportedArchs func(archs *int32) nvrtcResult
	nvrtcCreateProgram     func(prog *uintptr, src string, name string, numHeaders int32, headers, includeNames unsafe.Pointer) nvrtcResult
	nvrtcCompileProgram    func(prog uintptr, numOptions int32, options unsafe.Pointer) nvrtcResult
	nvrtcGetCUBINSize      func(prog uintptr, size *uintptr) nvrtcResult
	nvrtcGetCUBIN          func(prog uintptr, cubin unsafe.Pointer) nvrtcResult
	nvrtcGetPTXSize        func(prog uintptr, size *uintptr) nvrtcResult
	nvrtcGetPTX            func(prog uintptr, ptx unsafe.Pointer) nvrtcResult
	nvrtcGetProgramLogSize func(prog uintptr, size *uintptr) nvrtcResult
	nvrtcGetProgramLog     func(prog uintptr, log unsafe.Pointer) nvrtcResult
	nvrtcDestroyProgram    func(prog *uintptr) nvrtcResult
}

func (n *nvrtcAPI) table() []binding {
	return []binding{
		{"nvrtcVersion", &n.nvrtcVersion},
		{"nvrtcGetNumSupportedArchs", &n.nvrtcGetNumSupported},
		{"nvrtcGetSupportedArchs", &n.nvrtcGetSupportedArchs},
		{"nvrtcCreateProgram", &n.nvrtcCreateProgram},
		{"nvrtcCompileProgram", &n.nvrtcCompileProgram},
		{"nvrtcGetCUBINSize", &n.nvrtcGetCUBINSize},
		{"nvrtcGetCUBIN", &n.nvrtcGetCUBIN},
		{"nvrtcGetPTXSize", &n.nvrtcGetPTXSize},
		{"nvrtcGetPTX", &n.nvrtcGetPTX},
		{"nvrtcGetProgramLogSize", &n.nvrtcGetProgramLogSize},
		{"nvrtcGetProgramLog", &n.nvrtcGetProgramLog},
		{"nvrtcDestroyProgram", &n.nvrtcDestroyProgram},
	}
}

// cublasLtAPI is the cuBLASLt subset (libcublasLt.so.*).
type cublasLtAPI struct {
	cublasLtGetVersion              func() uintptr
	cublasLtCreate                  func(handle *uintptr) cublasStatus
	cublasLtDestroy                 func(handle uintptr) cublasStatus
	cublasLtMatmulDescCreate        func(desc *uintptr, computeType int32, scaleType int32) cublasStatus
	cublasLtMatmulDescDestroy       func(desc uintptr) cublasStatus
	cublasLtMatmulDescSetAttribute  func(desc uintptr, attr int32, buf unsafe.Pointer, size uintptr) cublasStatus
	cublasLtMatrixLayoutCreate      func(layout *uintptr, dtype int32, rows, cols uint64, ld int64) cublasStatus
	cublasLtMatrixLayoutDestroy     func(layout uintptr) cublasStatus
	cublasLtMatmulPreferenceCreate  func(pref *uintptr) cublasStatus
	cublasLtMatmulPreferenceDestroy func(pref uintptr) cublasStatus
	cublasLtMatmulPreferenceSetAttr func(pref uintptr, attr int32, buf unsafe.Pointer, size uintptr) cublasStatus
	cublasLtMatmulAlgoGetHeuristic  func(handle, desc, a, b, c, d, pref uintptr, requested int32, results unsafe.Pointer, returned *int32) cublasStatus
	cublasLtMatmul                  func(handle, desc uintptr, alpha unsafe.Pointer, a, aDesc, b, bDesc uintptr, beta unsafe.Pointer, c, cDesc, d, dDesc uintptr, algo unsafe.Pointer, workspace, workspaceSize, stream uintptr) cublasStatus
}

func (c *cublasLtAPI) table() []binding {
	return []binding{
		{"cublasLtGetVersion", &c.cublasLtGetVersion},
		{"cublasLtCreate", &c.cublasLtCreate},
		{"cublasLtDestroy", &c.cublasLtDestroy},
		{"cublasLtMatmulDescCreate", &c.cublasLtMatmulDescCreate},
		{"cublasLtMatmulDescDestroy", &c.cublasLtMatmulDescDestroy},
		{"cublasLtMatmulDescSetAttribute", &c.cublasLtMatmulDescSetAttribute},
		{"cublasLtMatrixLayoutCreate", &c.cublasLtMatrixLayoutCreate},
		{"cublasLtMatrixLayoutDestroy", &c.cublasLtMatrixLayoutDestroy},
		{"cublasLtMatmulPreferenceCreate", &c.cublasLtMatmulPreferenceCreate},
		{"cublasLtMatmulPreferenceDestroy", &c.cublasLtMatmulPreferenceDestroy},
		{"cublasLtMatmulPreferenceSetAttribute", &c.cublasLtMatmulPreferenceSetAttr},
		{"cublasLtMatmulAlgoGetHeuristic", &c.cublasLtMatmulAlgoGetHeuristic},
		{"cublasLtMatmul", &c.cublasLtMatmul},
	}
}

// cuBLAS / CUDA library constants (cublas_api.h, cublasLt.h, library_types.h;
// the values are those of CUDA 12.x and 13.x alike).
const (
	cudaR32F              = 0
	cudaR16BF             = 14
	cublasCompute32F      = 68 // plain fp32 accumulate, no TF32
	cublasOpN             = 0
	ltDescTransA          = 3
	ltDescTransB          = 4
	ltDescEpilogue        = 7
	ltDescBiasPointer     = 8
	ltEpilogueDefault     = 1
	ltEpilogueBias        = 4
	ltEpilogueGELUBias    = 36 // tanh-approximated GELU after the bias
	ltPrefMaxWorkspace    = 1
	ltHeuristicResultSize = 96 // sizeof(cublasLtMatmulHeuristicResult_t)
	ltAlgoSize            = 64 // sizeof(cublasLtMatmulAlgo_t), the result's first field
)

// binding ties a C symbol to the Go function variable that will call it.
type binding struct {
	name string
	fn   any // pointer to a func variable
}

// bind resolves every symbol of table in the library at handle. Missing
// symbols are collected into one error instead of purego's panic.
func bind(lib string, handle uintptr, table []binding) error {
	var missing []string
	for _, b := range table {
		sym, err := purego.Dlsym(handle, b.name)
		if err != nil || sym == 0 {
			missing = append(missing, b.name)
			continue
		}
		purego.RegisterFunc(b.fn, sym)
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s lacks %v (too old?)", ErrNoLibrary, lib, missing)
	}
	return nil
}
