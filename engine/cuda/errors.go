package cuda

import "errors"

// Sentinel errors. Every failure wraps one of them with the call and detail.
var (
	// ErrNoDriver: libcuda.so.1 could not be found or loaded.
	ErrNoDriver = errors.New("no CUDA driver")
	// ErrNoDevice: the driver loaded but reports no usable device.
	ErrNoDevice = errors.New("no CUDA device")
	// ErrNoLibrary: NVRTC or cuBLASLt could not be found or loaded.
	ErrNoLibrary = errors.New("CUDA library missing")
	// ErrDriver: a driver API call failed.
	ErrDriver = errors.New("CUDA driver error")
	// ErrNVRTC: run-time compilation of the kernels failed.
	ErrNVRTC = errors.New("NVRTC error")
	// ErrCublas: a cuBLASLt call failed.
	ErrCublas = errors.New("cuBLASLt error")
	// ErrUnsupported: the artifact's shape is beyond what these kernels handle.
	ErrUnsupported = errors.New("unsupported by the CUDA backend")
)
