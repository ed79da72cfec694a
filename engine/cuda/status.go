package cuda

import (
	"fmt"
	"unsafe"
)

// cuResult is the driver API's CUresult.
type cuResult int32

// nvrtcResult is NVRTC's status code.
type nvrtcResult int32

// cublasStatus is cuBLAS's cublasStatus_t.
type cublasStatus int32

// cuResultNames names the CUresult codes worth naming when the driver cannot
// (it is not loaded, or cuGetErrorName fails).
var cuResultNames = map[cuResult]string{
	0: "CUDA_SUCCESS", 1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY",
	3: "CUDA_ERROR_NOT_INITIALIZED", 4: "CUDA_ERROR_DEINITIALIZED", 34: "CUDA_ERROR_STUB_LIBRARY",
	46: "CUDA_ERROR_DEVICE_UNAVAILABLE", 100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE", 201: "CUDA_ERROR_INVALID_CONTEXT", 209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX", 221: "CUDA_ERROR_JIT_COMPILER_NOT_FOUND", 222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	400: "CUDA_ERROR_INVALID_HANDLE", 500: "CUDA_ERROR_NOT_FOUND", 600: "CUDA_ERROR_NOT_READY",
	700: "CUDA_ERROR_ILLEGAL_ADDRESS", 701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", 702: "CUDA_ERROR_LAUNCH_TIMEOUT",
	719: "CUDA_ERROR_LAUNCH_FAILED", 801: "CUDA_ERROR_NOT_SUPPORTED", 803: "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
	804: "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE", 900: "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED",
	901: "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED", 905: "CUDA_ERROR_STREAM_CAPTURE_WRONG_THREAD",
	999: "CUDA_ERROR_UNKNOWN",
}

var nvrtcNames = map[nvrtcResult]string{
	0: "NVRTC_SUCCESS", 1: "NVRTC_ERROR_OUT_OF_MEMORY", 2: "NVRTC_ERROR_PROGRAM_CREATION_FAILURE",
	3: "NVRTC_ERROR_INVALID_INPUT", 4: "NVRTC_ERROR_INVALID_PROGRAM", 5: "NVRTC_ERROR_INVALID_OPTION",
	6: "NVRTC_ERROR_COMPILATION", 7: "NVRTC_ERROR_BUILTIN_OPERATION_FAILURE", 11: "NVRTC_ERROR_INTERNAL_ERROR",
}

var cublasNames = map[cublasStatus]string{
	0: "CUBLAS_STATUS_SUCCESS", 1: "CUBLAS_STATUS_NOT_INITIALIZED", 3: "CUBLAS_STATUS_ALLOC_FAILED",
	7: "CUBLAS_STATUS_INVALID_VALUE", 8: "CUBLAS_STATUS_ARCH_MISMATCH", 11: "CUBLAS_STATUS_MAPPING_ERROR",
	13: "CUBLAS_STATUS_EXECUTION_FAILED", 14: "CUBLAS_STATUS_INTERNAL_ERROR", 15: "CUBLAS_STATUS_NOT_SUPPORTED",
	16: "CUBLAS_STATUS_LICENSE_ERROR",
}

// driverError is a failed driver call. Its text names the call, the code and
// the driver's own description, e.g.
// "cuMemAlloc_v2: CUDA_ERROR_OUT_OF_MEMORY (2): out of memory".
type driverError struct {
	call string
	code cuResult
	desc string // the driver's cuGetErrorString, when it could say
}

func (e *driverError) Error() string {
	name := cuResultNames[e.code]
	if name == "" {
		name = "CUresult"
	}
	if e.desc != "" {
		return fmt.Sprintf("%s: %s (%d): %s", e.call, name, int32(e.code), e.desc)
	}
	return fmt.Sprintf("%s: %s (%d)", e.call, name, int32(e.code))
}

func (e *driverError) Unwrap() error { return ErrDriver }

// Code returns the CUresult, for callers that branch on it.
func (e *driverError) Code() int { return int(e.code) }

type nvrtcError struct {
	call string
	code nvrtcResult
	log  string // the compiler's log, when there is one
}

func (e *nvrtcError) Error() string {
	name := nvrtcNames[e.code]
	if name == "" {
		name = "nvrtcResult"
	}
	s := fmt.Sprintf("%s: %s (%d)", e.call, name, int32(e.code))
	if e.log != "" {
		s += ":\n" + e.log
	}
	return s
}

func (e *nvrtcError) Unwrap() error { return ErrNVRTC }

type cublasError struct {
	call string
	code cublasStatus
}

func (e *cublasError) Error() string {
	name := cublasNames[e.code]
	if name == "" {
		name = "cublasStatus_t"
	}
	return fmt.Sprintf("%s: %s (%d)", e.call, name, int32(e.code))
}

func (e *cublasError) Unwrap() error { return ErrCublas }

// cString copies a NUL-terminated C string (owned by the library).
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	n := 0
	for *(*byte)(unsafe.Add(unsafe.Pointer(p), n)) != 0 && n < 1<<16 {
		n++
	}
	return string(unsafe.Slice(p, n))
}
