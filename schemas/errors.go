package schemas

import "fmt"

// Error is a failure carried in a reply: a stable machine-readable code and a
// message a user can act on.
type Error struct {
	Code    string `json:"code" msgpack:"code"`
	Message string `json:"message" msgpack:"message"`
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Errorf builds an *Error.
func Errorf(code, format string, a ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, a...)}
}

// Stable error codes.
const (
	CodeBadEncoding   = "bad_encoding"      // not decodable as JSON or msgpack
	CodeBadRequest    = "bad_request"       // decodable but the wrong shape or types
	CodeDuplicate     = "duplicate_id"      // the id was queued moments ago (de-duplication window)
	CodeMissingField  = "missing_field"     // a required field is absent
	CodeInvalidUTF8   = "invalid_utf8"      // text is not UTF-8
	CodeOutOfRange    = "out_of_range"      // an id or value outside its domain
	CodeWrongLength   = "wrong_length"      // pre-tokenized input of the wrong length
	CodeDeadline      = "deadline_exceeded" // the deadline passed before compute
	CodeUnknownModel  = "unknown_model"     // no such model
	CodeQueueFull     = "queue_full"        // the stream refused: at its limit
	CodeUnavailable   = "unavailable"       // the queue could not be reached
	CodeInternal      = "internal"          // a bug or an engine failure
	CodeBadCompileJob = "bad_compile_job"   // invalid compile options or source
	CodeCompileFailed = "compile_failed"    // compilation or verification failed
)
