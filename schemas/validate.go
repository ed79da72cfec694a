package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxIDLen bounds request ids, which travel as Nats-Msg-Id headers and in logs.
const MaxIDLen = 256

// Shape is what a model accepts: its compiled sequence length and the sizes
// of its token and token-type vocabularies.
type Shape struct {
	Seq, VocabSize, TypeVocabSize int
}

// rawFields is a decoded top-level object whose values are left encoded.
type rawFields struct {
	enc Encoding
	js  map[string]json.RawMessage
	mp  map[string]msgpack.RawMessage
}

// msgpackNil is the encoding of nil.
var msgpackNil = msgpack.RawMessage{0xc0}

// decodeFields decodes data as a JSON object or msgpack map without looking
// at its values: failure means the payload is undecodable (CodeBadEncoding).
func decodeFields(e Encoding, data []byte) (*rawFields, *Error) {
	f := &rawFields{enc: e}
	var err error
	if e == Msgpack {
		err = Unmarshal(e, data, &f.mp)
		if err == nil && f.mp == nil {
			err = fmt.Errorf("%w: msgpack payload is nil, want a map", ErrEncoding)
		}
		for k, v := range f.mp {
			if len(v) == 0 {
				// The decoder stores nil as an empty RawMessage, which
				// would re-encode as nothing at all: keep it nil.
				f.mp[k] = msgpackNil
			}
		}
	} else {
		err = Unmarshal(e, data, &f.js)
	}
	if err != nil {
		return nil, &Error{Code: CodeBadEncoding, Message: err.Error()}
	}
	return f, nil
}

func (f *rawFields) raw(key string) ([]byte, bool) {
	if f.enc == Msgpack {
		v, ok := f.mp[key]
		return v, ok
	}
	v, ok := f.js[key]
	return v, ok
}

// decode decodes one raw field value into v.
func (f *rawFields) decode(raw []byte, v any) error {
	if f.enc == Msgpack {
		return msgpack.Unmarshal(raw, v)
	}
	return json.Unmarshal(raw, v)
}

// set replaces a field with the encoding of v.
func (f *rawFields) set(key string, v any) error {
	b, err := Marshal(f.enc, v)
	if err != nil {
		return err
	}
	if f.enc == Msgpack {
		f.mp[key] = b
	} else {
		f.js[key] = b
	}
	return nil
}

func (f *rawFields) marshal() ([]byte, error) {
	if f.enc == Msgpack {
		return msgpack.Marshal(f.mp)
	}
	return json.Marshal(f.js)
}

// stringField returns the string value of key, "" when absent or null.
func (f *rawFields) stringField(key string) (string, *Error) {
	raw, ok := f.raw(key)
	if !ok {
		return "", nil
	}
	var s *string
	if err := f.decode(raw, &s); err != nil {
		return "", Errorf(CodeBadRequest, "field %q must be a string", key)
	}
	if s == nil {
		return "", nil
	}
	return *s, nil
}

// EnsureID checks that data is a decodable object whose "id", if present, is a
// usable string. When the id is absent or empty it sets newID() and returns the
// re-encoded payload; otherwise out is data itself, byte for byte, so that
// fields this version does not know survive the trip through the queue.
func EnsureID(e Encoding, data []byte, newID func() string) (id string, out []byte, err *Error) {
	if e == JSON {
		if id, ok := jsonID(data); ok {
			if err := checkID(id); err != nil {
				return "", nil, err
			}
			return id, data, nil
		}
	}
	return ensureIDFull(e, data, newID)
}

// ensureIDFull is EnsureID by a full decode: every case, every error.
func ensureIDFull(e Encoding, data []byte, newID func() string) (id string, out []byte, err *Error) {
	f, err := decodeFields(e, data)
	if err != nil {
		return "", nil, err
	}
	id, err = f.stringField("id")
	if err != nil {
		return "", nil, err
	}
	if id != "" {
		if err := checkID(id); err != nil {
			return "", nil, err
		}
		return id, data, nil
	}
	id = newID()
	if err := f.set("id", id); err != nil {
		return "", nil, Errorf(CodeInternal, "re-encoding the request with its new id: %v", err)
	}
	b, merr := f.marshal()
	if merr != nil {
		return "", nil, Errorf(CodeInternal, "re-encoding the request with its new id: %v", merr)
	}
	return id, b, nil
}

func checkID(id string) *Error {
	if len(id) > MaxIDLen {
		return Errorf(CodeBadRequest, "id is %d bytes long, at most %d are allowed", len(id), MaxIDLen)
	}
	if !utf8.ValidString(id) {
		return Errorf(CodeInvalidUTF8, "id is not valid UTF-8")
	}
	return nil
}

// PeekID returns the "id" of a payload when it can be read, for error replies
// to requests that fail validation later on; "" otherwise.
func PeekID(e Encoding, data []byte) string {
	f, err := decodeFields(e, data)
	if err != nil {
		return ""
	}
	id, err := f.stringField("id")
	if err != nil || checkID(id) != nil {
		return ""
	}
	return id
}

// DecodeInferRequest decodes data into req and tells apart an undecodable
// payload (CodeBadEncoding), a decodable one with fields of the wrong type
// (CodeBadRequest) and text that is not UTF-8 (CodeInvalidUTF8). It does not
// check the request against a model: see Validate.
func DecodeInferRequest(e Encoding, data []byte, req *InferRequest) *Error {
	// The common case in one pass: JSON whose strings cannot decode lossily
	// decodes into the struct exactly as below, where the checks before and
	// after the struct decode find nothing (an id array value beyond 32 bits
	// fails the struct decode itself). Anything else takes the full path,
	// which also words the errors.
	if e == JSON && plainJSON(data) {
		if Unmarshal(JSON, data, req) == nil {
			return nil
		}
		*req = InferRequest{}
	}
	return decodeInferRequestFull(e, data, req)
}

// decodeInferRequestFull is DecodeInferRequest by a full decode.
func decodeInferRequestFull(e Encoding, data []byte, req *InferRequest) *Error {
	f, derr := decodeFields(e, data)
	if derr != nil {
		return derr
	}
	// Before the struct decode: msgpack would silently wrap an id beyond
	// 32 bits into range, and JSON would call it a type error.
	if e := f.checkIDArrays(); e != nil {
		return e
	}
	if raw, ok := f.raw("deadline"); ok && e == Msgpack && bytes.Equal(raw, msgpackNil) {
		// nil means no deadline, as null does in JSON; the msgpack decoder
		// cannot store nil in a time.Time, so drop the field.
		delete(f.mp, "deadline")
		b, err := f.marshal()
		if err != nil {
			return Errorf(CodeInternal, "re-encoding the request: %v", err)
		}
		data = b
	}
	if err := Unmarshal(e, data, req); err != nil {
		return Errorf(CodeBadRequest, "%s", f.typeError(inferFields, err))
	}
	// encoding/json replaces invalid UTF-8 (and lone surrogate escapes) with
	// U+FFFD instead of failing, so look at the raw bytes of the text fields.
	for _, key := range []string{"a", "b", "id"} {
		raw, ok := f.raw(key)
		if !ok {
			continue
		}
		if e == JSON && lossyJSONString(raw) {
			return Errorf(CodeInvalidUTF8, "field %q is not valid UTF-8 text", key)
		}
	}
	if e == Msgpack {
		for key, s := range map[string]string{"a": req.A, "b": req.B, "id": req.ID} {
			if !utf8.ValidString(s) {
				return Errorf(CodeInvalidUTF8, "field %q is not valid UTF-8 text", key)
			}
		}
	}
	return nil
}

// lossyJSONString reports whether decoding the JSON string raw would replace
// something with U+FFFD: invalid UTF-8 bytes or an unpaired surrogate escape.
func lossyJSONString(raw []byte) bool {
	if !utf8.Valid(raw) {
		return true
	}
	var s string
	if json.Unmarshal(raw, &s) != nil || !strings.ContainsRune(s, utf8.RuneError) {
		return false
	}
	// The text may carry U+FFFD honestly, literally or escaped; count them.
	honest := bytes.Count(raw, []byte("\uFFFD")) + countFold(raw, `\ufffd`)
	return strings.Count(s, "\uFFFD") > honest
}

func countFold(b []byte, sub string) int {
	return strings.Count(strings.ToLower(string(b)), sub)
}

// field is a known message field and the type it must have, to name the
// culprit of a failed decode in both encodings.
type field struct {
	key, want string
	into      func() any
}

var inferFields = []field{
	{"v", "an integer", func() any { return new(int) }},
	{"id", "a string", func() any { return new(string) }},
	{"model", "a string", func() any { return new(string) }},
	{"a", "a string", func() any { return new(string) }},
	{"b", "a string", func() any { return new(string) }},
	{"input_ids", "an array of integers", func() any { return new([]int32) }},
	{"token_type_ids", "an array of integers", func() any { return new([]int32) }},
	{"attention_mask", "an array of integers", func() any { return new([]int32) }},
	{"deadline", "a time (RFC 3339 string in JSON, timestamp in msgpack)", func() any { return new(time.Time) }},
}

var compileFields = []field{
	{"v", "an integer", func() any { return new(int) }},
	{"id", "a string", func() any { return new(string) }},
	{"name", "a string", func() any { return new(string) }},
	{"source", "a string", func() any { return new(string) }},
	{"batch", "an integer", func() any { return new(int) }},
	{"seq", "an integer", func() any { return new(int) }},
	{"precision", "a string", func() any { return new(string) }},
	{"gelu", "a string", func() any { return new(string) }},
}

// typeError names the first known field that does not decode into its type;
// failing that it words the decoder's own error.
func (f *rawFields) typeError(fields []field, err error) string {
	for _, fd := range fields {
		raw, ok := f.raw(fd.key)
		if ok && f.decode(raw, fd.into()) != nil {
			return fmt.Sprintf("field %q must be %s", fd.key, fd.want)
		}
	}
	return typeError(err)
}

// checkIDArrays reads the pre-tokenized arrays as 64-bit integers and refuses
// values that a 32-bit id cannot hold (CodeOutOfRange), which msgpack would
// otherwise wrap silently into another, valid, id.
func (f *rawFields) checkIDArrays() *Error {
	for _, key := range []string{"input_ids", "token_type_ids", "attention_mask"} {
		raw, ok := f.raw(key)
		if !ok {
			continue
		}
		var vs []any
		if f.decode(raw, &vs) != nil {
			continue // the struct decode words the type error
		}
		for i, v := range vs {
			if n, ok := bigInt(v); ok {
				return Errorf(CodeOutOfRange, "%s[%d] = %s does not fit a 32-bit id", key, i, n)
			}
		}
	}
	return nil
}

// bigInt reports an integer value outside the int32 range, in words.
func bigInt(v any) (string, bool) {
	switch n := v.(type) {
	case int64:
		return strconv.FormatInt(n, 10), n < math.MinInt32 || n > math.MaxInt32
	case uint64:
		return strconv.FormatUint(n, 10), n > math.MaxInt32
	case uint32:
		return strconv.FormatUint(uint64(n), 10), n > math.MaxInt32
	case float64: // JSON numbers
		if !math.IsInf(n, 0) && n == math.Trunc(n) && (n < math.MinInt32 || n > math.MaxInt32) {
			return strconv.FormatFloat(n, 'f', -1, 64), true
		}
	}
	return "", false
}

// typeError words a decode failure of a decodable payload for the user.
func typeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "(top level)"
		}
		return fmt.Sprintf("field %q: cannot use a JSON %s as %s", field, te.Value, te.Type)
	}
	msg := err.Error()
	msg = strings.TrimPrefix(msg, ErrEncoding.Error()+": ")
	return "a field has the wrong type: " + Clip(msg, 200)
}

// Validate checks a decoded request against a model's shape and its deadline
// at now. Text requests need a (and may have b); pre-tokenized ones need
// input_ids of exactly s.Seq ids, and token_type_ids (default zeros) and
// attention_mask (default ones, as in Hugging Face) of the same length.
func (r *InferRequest) Validate(s Shape, now time.Time) *Error {
	if r.V < 0 || r.V > Version {
		return Errorf(CodeBadRequest, "wire version v=%d is not supported (this side speaks up to %d)", r.V, Version)
	}
	if err := checkID(r.ID); err != nil {
		return err
	}
	if !r.Deadline.IsZero() && !now.Before(r.Deadline) {
		return Errorf(CodeDeadline, "the deadline %s passed before the request could be run", r.Deadline.UTC().Format(time.RFC3339Nano))
	}
	if !r.Tokenized() {
		if r.A == "" && r.B == "" {
			return Errorf(CodeMissingField, "give the text \"a\" (and optionally \"b\"), or pre-tokenized \"input_ids\"")
		}
		return nil
	}
	if r.A != "" || r.B != "" {
		return Errorf(CodeBadRequest, "give either text (\"a\", \"b\") or pre-tokenized ids (\"input_ids\", ...), not both")
	}
	if r.InputIDs == nil {
		return Errorf(CodeMissingField, "\"input_ids\" is required with \"token_type_ids\" or \"attention_mask\"")
	}
	if len(r.InputIDs) != s.Seq {
		return Errorf(CodeWrongLength, "\"input_ids\" has %d ids; this model takes exactly %d (pad with [PAD] and set \"attention_mask\" to 0 there)", len(r.InputIDs), s.Seq)
	}
	if r.TokenTypeIDs != nil && len(r.TokenTypeIDs) != len(r.InputIDs) {
		return Errorf(CodeWrongLength, "\"token_type_ids\" has %d values but \"input_ids\" has %d", len(r.TokenTypeIDs), len(r.InputIDs))
	}
	if r.AttentionMask != nil && len(r.AttentionMask) != len(r.InputIDs) {
		return Errorf(CodeWrongLength, "\"attention_mask\" has %d values but \"input_ids\" has %d", len(r.AttentionMask), len(r.InputIDs))
	}
	for i, id := range r.InputIDs {
		if id < 0 || int(id) >= s.VocabSize {
			return Errorf(CodeOutOfRange, "input_ids[%d] = %d is outside the vocabulary [0, %d)", i, id, s.VocabSize)
		}
	}
	for i, t := range r.TokenTypeIDs {
		if t < 0 || int(t) >= s.TypeVocabSize {
			return Errorf(CodeOutOfRange, "token_type_ids[%d] = %d is outside [0, %d)", i, t, s.TypeVocabSize)
		}
	}
	if r.AttentionMask != nil {
		attended := false
		for i, m := range r.AttentionMask {
			if m != 0 && m != 1 {
				return Errorf(CodeOutOfRange, "attention_mask[%d] = %d, want 0 or 1", i, m)
			}
			attended = attended || m == 1
		}
		if !attended {
			return Errorf(CodeBadRequest, "\"attention_mask\" is all zeros: the model would attend to no token")
		}
	}
	return nil
}

// DecodeCompileJob decodes data into job like DecodeInferRequest, then checks
// the fields the intake can judge without the compiler: a usable id and name.
func DecodeCompileJob(e Encoding, data []byte, job *CompileJob) *Error {
	f, derr := decodeFields(e, data)
	if derr != nil {
		return derr
	}
	if err := Unmarshal(e, data, job); err != nil {
		return Errorf(CodeBadCompileJob, "%s", f.typeError(compileFields, err))
	}
	if err := checkID(job.ID); err != nil {
		return err
	}
	if job.V < 0 || job.V > Version {
		return Errorf(CodeBadCompileJob, "wire version v=%d is not supported (this side speaks up to %d)", job.V, Version)
	}
	if !ValidName(job.Name) {
		return Errorf(CodeBadCompileJob, "name %q is not a valid model name: 1 to 64 of letters, digits, '-' and '_'", Clip(job.Name, 80))
	}
	if job.Source == "" {
		return Errorf(CodeBadCompileJob, "\"source\" is required: \"synthetic:bert-large\" or \"checkpoint:<name>\"")
	}
	return nil
}
