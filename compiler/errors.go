package compiler

import "errors"

// Sentinel errors.
var (
	ErrOptions = errors.New("invalid compile options")
	ErrSource  = errors.New("invalid compile source")
)
