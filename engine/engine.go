// Package engine runs compiled artifacts. Backends (oneDNN on AMX CPUs, CUDA,
// plain Go) register themselves by name behind one interface, so the worker,
// the CLI and the compiler's verification never know which one they drive.
package engine

import (
	"fmt"

	"github.com/bertq/bertq/artifact"
)

// Input is one static batch, each slice Batch×Seq long, row-major by sequence.
type Input struct {
	InputIDs      []int32
	TokenTypeIDs  []int32
	AttentionMask []int32
}

// Spec is the static shape a Model was compiled for.
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
}

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
	// Run fills logits (Batch×Labels) for a full static batch.
	Run(in Input, logits []float32) error
	Close() error
}

// Check validates an Input against a Spec and the model's vocabulary, so
// backends can trust indices. It names the first bad position it finds.
func Check(s Spec, vocab, typeVocab int, in Input) error {
	n := s.Batch * s.Seq
	if len(in.InputIDs) != n || len(in.TokenTypeIDs) != n || len(in.AttentionMask) != n {
		return fmt.Errorf("%w: want %d×%d values in each of input_ids, token_type_ids and attention_mask, got %d, %d and %d",
			ErrInput, s.Batch, s.Seq, len(in.InputIDs), len(in.TokenTypeIDs), len(in.AttentionMask))
	}
	for i := 0; i < n; i++ {
		if id := in.InputIDs[i]; id < 0 || int(id) >= vocab {
			return fmt.Errorf("%w: input_ids[%d][%d] = %d outside the vocabulary [0, %d)", ErrInput, i/s.Seq, i%s.Seq, id, vocab)
		}
		if t := in.TokenTypeIDs[i]; t < 0 || int(t) >= typeVocab {
			return fmt.Errorf("%w: token_type_ids[%d][%d] = %d outside [0, %d)", ErrInput, i/s.Seq, i%s.Seq, t, typeVocab)
		}
		if m := in.AttentionMask[i]; m != 0 && m != 1 {
			return fmt.Errorf("%w: attention_mask[%d][%d] = %d, want 0 or 1", ErrInput, i/s.Seq, i%s.Seq, m)
		}
	}
	return nil
}
