package checkpoint

import "errors"

// Sentinel errors. Every error this package returns wraps one of them (or an
// fs error such as fs.ErrNotExist for a missing file, or bert.ErrInvalidConfig
// alongside ErrConfig), with the offending file and the problem in the
// message, so callers can test them with errors.Is:
//
//	/models/x/model.safetensors: tensor "classifier.weight" has shape [3 1024], expected [2 1024]: checkpoint: wrong tensor shape
var (
	// ErrNotBERT: config.json is not a BERT model (model_type is not "bert").
	ErrNotBERT = errors.New("checkpoint: not a BERT model")
	// ErrConfig: config.json is unreadable or inconsistent.
	ErrConfig = errors.New("checkpoint: bad config.json")
	// ErrNoWeights: the directory has neither model.safetensors nor
	// model.safetensors.index.json.
	ErrNoWeights = errors.New("checkpoint: no safetensors weights")
	// ErrMissingTensor: a tensor the model needs is not in the checkpoint.
	ErrMissingTensor = errors.New("checkpoint: missing tensor")
	// ErrShape: a tensor exists but has the wrong shape.
	ErrShape = errors.New("checkpoint: wrong tensor shape")
	// ErrDType: a tensor's dtype is unknown or cannot be converted to float32.
	ErrDType = errors.New("checkpoint: unsupported dtype")
	// ErrCorrupt: a safetensors file or shard index is structurally invalid
	// (truncated, bad header length, invalid header JSON, offsets out of
	// bounds, overlapping or not matching dtype×shape, absurd dims, ...).
	ErrCorrupt = errors.New("checkpoint: corrupt safetensors")
	// ErrUnknownSynthetic: a "synthetic:" source names no known model.
	ErrUnknownSynthetic = errors.New("checkpoint: unknown synthetic model")
)
