package engine

import "errors"

// Sentinel errors.
var (
	ErrUnknownBackend = errors.New("unknown engine backend")
	ErrUnavailable    = errors.New("engine backend unavailable")
	ErrInput          = errors.New("invalid engine input")
	ErrClosed         = errors.New("engine closed")
)
