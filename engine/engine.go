// Package engine runs compiled artifacts. Backends (oneDNN on AMX CPUs, CUDA,
// plain Go) register themselves by name behind one interface, so the worker,
// the CLI and the compiler's verification never know which one they drive.
package engine

import (
	"time"

	"github.com/bertq/bertq/artifact"
)

// Spec is the shape a Model was compiled for. Batch and Seq are the static
// shape, and also a batch's limits: at most Batch sequences of at most Seq
// tokens each.
type Spec struct {
	Batch, Seq, Labels int
	Precision          artifact.Precision
}

// Backend builds Models from artifacts.
type Backend interface {
	// Name is the registry key ("onednn", "cuda", "go").
	Name() string
	// Available returns nil when the backend can run here, else why not.
	Available() error
	// Load prepares the artifact's weights once, shared by every Runner.
	// The Model may keep referring to f; callers close f after the Model.
	Load(f *artifact.File, opts Options) (Model, error)
}

// Options tune a Load.
type Options struct {
	// Device selects a device index for accelerator backends.
	Device int
	// MatmulRows says how CPU matmuls meet a batch's varying number of
	// token rows: RowsRuntime (one primitive, M given at run time) or
	// RowsBucketed (a primitive per M rounded up); "" lets the backend pick
	// the one that keeps its fastest implementation.
	MatmulRows string
	// GEMM says who computes the CPU matmuls: "" or GEMMAuto lets the
	// backend use its own kernels where they beat the library's (oneDNN:
	// int8 on AVX2-only CPUs), GEMMLibrary keeps the library's everywhere.
	GEMM string
}

// GEMM values.
const (
	GEMMAuto    = "auto"
	GEMMLibrary = "library"
)

// MatmulRows values.
const (
	RowsRuntime  = "runtime"
	RowsBucketed = "bucketed"
)

// Model is a loaded artifact. It is safe for concurrent NewRunner calls.
type Model interface {
	Spec() Spec
	Backend() string
	// NewRunner makes an execution context; core ≥ 0 pins it to that CPU (or,
	// for an accelerator, selects a stream), core < 0 leaves it unpinned.
	NewRunner(core int) (Runner, error)
	Close() error
}

// Runner executes one batch at a time. A Runner is not safe for concurrent
// use; make one per core.
type Runner interface {
	// Run fills logits ([sequences][Labels]) for one batch, static or packed.
	Run(in Input, logits []float32) error
	Close() error
}

// Phase is a part of a forward that a PhaseRunner can run alone.
type Phase int

// Phases.
const (
	PhaseForward   Phase = iota // the whole forward
	PhaseGEMMs                  // the encoder matmuls with their fused post-ops
	PhaseBareGEMMs              // the encoder matmuls without bias or post-ops
	PhaseNonGEMM                // everything but the encoder matmuls
)

// PhaseRunner is a Runner that can time the parts of a forward separately,
// on the same shapes and buffers, for benchmarks. Only PhaseForward leaves
// meaningful logits.
type PhaseRunner interface {
	Runner
	RunPhase(p Phase, in Input, logits []float32) error
}

// Peaker is a Runner that can measure, on its own core, the peak rate of the
// instruction its matmuls' inner loops run on (a register-only loop), so that
// benchmarks can report how close the GEMMs come to the hardware.
type Peaker interface {
	// ISAPeak names the instruction (e.g. "avx2 vfmadd231ps") and returns
	// its rate in GFLOP/s (GOP/s for int8), measured for about d.
	ISAPeak(d time.Duration) (isa string, gflops float64, err error)
}
