package client

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/schemas"
)

// Sentinel errors, one per error code a bertq service replies with (see
// schemas/errors.go). An error reply is an *Error that matches its code's
// sentinel: errors.Is(err, client.ErrQueueFull).
var (
	ErrBadEncoding   = codeSentinel(schemas.CodeBadEncoding)
	ErrBadRequest    = codeSentinel(schemas.CodeBadRequest)
	ErrDuplicate     = codeSentinel(schemas.CodeDuplicate)
	ErrMissingField  = codeSentinel(schemas.CodeMissingField)
	ErrInvalidUTF8   = codeSentinel(schemas.CodeInvalidUTF8)
	ErrOutOfRange    = codeSentinel(schemas.CodeOutOfRange)
	ErrWrongLength   = codeSentinel(schemas.CodeWrongLength)
	ErrDeadline      = codeSentinel(schemas.CodeDeadline)
	ErrUnknownModel  = codeSentinel(schemas.CodeUnknownModel)
	ErrQueueFull     = codeSentinel(schemas.CodeQueueFull)
	ErrUnavailable   = codeSentinel(schemas.CodeUnavailable)
	ErrInternal      = codeSentinel(schemas.CodeInternal)
	ErrBadCompileJob = codeSentinel(schemas.CodeBadCompileJob)
	ErrCompileFailed = codeSentinel(schemas.CodeCompileFailed)
)

// Errors of the client itself.
var (
	// ErrTimeout: no answer came before the call's deadline. It also matches
	// context.DeadlineExceeded.
	ErrTimeout = errors.New("bertq: timeout waiting for the reply")
	// ErrNoResponders: nothing listens on the intake subject (no broker, or
	// no intake). It also matches nats.ErrNoResponders.
	ErrNoResponders = errors.New("bertq: no intake responds")
	// ErrBadReply: a message came back that is no bertq reply.
	ErrBadReply = errors.New("bertq: undecodable reply")
	// ErrPublish: the request could not be handed to NATS.
	ErrPublish = errors.New("bertq: publish failed")
	// ErrClosed: the client was closed, or its connection, while the call waited.
	ErrClosed = errors.New("bertq: client closed")
	// ErrInvalidOption: an option or argument that cannot work.
	ErrInvalidOption = errors.New("bertq: invalid option")
)

// sentinels maps each code to its sentinel.
var sentinels = map[string]error{}

func codeSentinel(code string) error {
	err := errors.New("bertq: " + code)
	sentinels[code] = err
	return err
}

// Sentinel returns the sentinel error of a reply code, or nil for a code this
// client does not know.
func Sentinel(code string) error { return sentinels[code] }

// Error is a failure a bertq service replied with, or one the client found
// before sending (an invalid model name or id). It matches the sentinel of
// its code, so callers test it with errors.Is.
type Error struct {
	// Code is the stable machine-readable code (schemas.Code*).
	Code string
	// Message says what went wrong, in words a user can act on.
	Message string
	// ID is the request's id, when known.
	ID string

	cause error // a lower-level error behind it, e.g. jetstream.ErrNoStreamResponse
}

func (e *Error) Error() string {
	s := "bertq: " + e.Code
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap returns the code's sentinel and the cause, if any.
func (e *Error) Unwrap() []error {
	var out []error
	if s := sentinels[e.Code]; s != nil {
		out = append(out, s)
	}
	if e.cause != nil {
		out = append(out, e.cause)
	}
	return out
}

// newError makes an *Error from a reply's error.
func newError(id string, e *schemas.Error) *Error {
	code := e.Code
	if code == "" {
		code = schemas.CodeInternal
	}
	err := &Error{Code: code, Message: e.Message, ID: id}
	if code == schemas.CodeDeadline {
		// The service gave up on the deadline this call sent: the same thing
		// as the caller's context running out.
		err.cause = context.DeadlineExceeded
	}
	return err
}

// noResponders is the error of a request that reached no intake.
func noResponders(subject string) error {
	return &wrapped{msg: "bertq: no intake responds on " + subject + ": is the broker running?", errs: []error{ErrNoResponders, nats.ErrNoResponders}}
}

// wrapped is an error with its own text that matches several others.
type wrapped struct {
	msg  string
	errs []error
}

func (w *wrapped) Error() string   { return w.msg }
func (w *wrapped) Unwrap() []error { return w.errs }
