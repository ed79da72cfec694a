// Package cuda is the NVIDIA GPU engine backend ("cuda"), in pure Go: the CUDA
// driver, NVRTC and cuBLASLt are loaded at run time with purego, so the
// package builds with CGO_ENABLED=0 and a binary built anywhere runs on any
// machine with a driver (and reports clearly where there is none).
//
// A Model holds the artifact's weights on the device, uploaded once and
// shared by its runners, the kernels (kernels/*.cu, compiled by NVRTC at Load
// for the device's architecture) and the cuBLASLt matmul plans. A Runner owns
// a stream, its activations and pinned host buffers; its first Run executes
// the forward directly and captures it in a CUDA graph, later Runs replay it.
//
// Numerics follow the CPU engine: bf16 artifacts multiply bf16 matrices with
// fp32 accumulation (activations stored as bf16 between kernels, the residual
// stream kept in fp32), fp32 artifacts run fp32 matmuls without TF32;
// LayerNorm, softmax, GELU, pooler and classifier compute in fp32.
//
// Environment: BERTQ_CUDA_LIB_DIR adds folders to search for the libraries;
// BERTQ_CUDA_GRAPH=0 runs every forward directly instead of replaying a
// graph; BERTQ_CUDA_GELU_EPILOGUE=0 uses the backend's own tanh GELU kernel
// instead of cuBLASLt's GELU_BIAS epilogue for tanh-GELU models.
//
// Testing without a GPU: TestKernelsOnCPUEmulator runs kernels/*.cu on a
// CPU emulation of CUDA threads (testdata/emu/cuda_emu.h), and
// TestCUDAOnFakeDevice runs every GPU test against testdata/emu/fakecuda.cc,
// a stand-in for libcuda, libnvrtc and libcublasLt built on that emulator.
// On a GPU machine, scripts/gpu-check.sh runs TestCUDA, the benchmarks and an
// end-to-end pipeline from prebuilt binaries.
package cuda

import (
	"fmt"
	"os"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
)

func init() { engine.Register(backend{}) }

type backend struct{}

func (backend) Name() string { return "cuda" }

// Available reports whether the driver, a device, NVRTC and cuBLASLt were
// all found; the error names what is missing and where it was looked for.
func (backend) Available() error { return libs().status.Err }

func (backend) Load(f *artifact.File, opts engine.Options) (engine.Model, error) {
	r := libs()
	if r.status.Err != nil {
		return nil, fmt.Errorf("%w: cuda: %v", engine.ErrUnavailable, r.status.Err)
	}
	if opts.Device < 0 || opts.Device >= len(r.status.Devices) {
		return nil, fmt.Errorf("%w: cuda: device %d requested, %d present", engine.ErrUnavailable, opts.Device, len(r.status.Devices))
	}
	w, err := engine.ReadWeights(f)
	if err != nil {
		return nil, err
	}
	return load(r, r.status.Devices[opts.Device], w, settingsFromEnv())
}

// settings are the backend's switches, from the environment by default.
type settings struct {
	graphs       bool // capture and replay CUDA graphs
	geluEpilogue bool // cuBLASLt GELU_BIAS for tanh-GELU models
}

func settingsFromEnv() settings {
	return settings{
		graphs:       os.Getenv("BERTQ_CUDA_GRAPH") != "0",
		geluEpilogue: os.Getenv("BERTQ_CUDA_GELU_EPILOGUE") != "0",
	}
}
