package artifact

import "errors"

// Sentinel errors; every failure wraps one of them with the file and detail.
var (
	ErrNotArtifact   = errors.New("not a bertq artifact")
	ErrVersion       = errors.New("unsupported artifact format version")
	ErrTruncated     = errors.New("artifact truncated")
	ErrChecksum      = errors.New("artifact checksum mismatch (corrupted or tampered)")
	ErrHeader        = errors.New("invalid artifact header")
	ErrMissingTensor = errors.New("tensor missing from artifact")
)
