package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"strings"

	"github.com/vmihailenco/msgpack/v5"
)

// Encoding is a wire encoding.
type Encoding int

// Encodings.
const (
	JSON Encoding = iota
	Msgpack
)

func (e Encoding) String() string {
	if e == Msgpack {
		return "msgpack"
	}
	return "json"
}

// ContentType is the header value that selects e.
func (e Encoding) ContentType() string {
	if e == Msgpack {
		return ContentTypeMsgpack
	}
	return ContentTypeJSON
}

// ErrEncoding is wrapped by every decode failure.
var ErrEncoding = errors.New("undecodable payload")

// Detect picks the encoding from a Content-Type header value, else by sniffing:
// a JSON document starts (after white space) with '{' or another JSON token,
// a msgpack map with 0x80–0x8f, 0xde or 0xdf.
func Detect(contentType string, data []byte) Encoding {
	if contentType != "" {
		mt, _, err := mime.ParseMediaType(contentType)
		if err == nil {
			switch {
			case strings.Contains(mt, "msgpack"):
				return Msgpack
			case strings.Contains(mt, "json"):
				return JSON
			}
		}
	}
	t := bytes.TrimLeft(data, " \t\r\n")
	if len(t) > 0 && (t[0] >= 0x80 && t[0] <= 0x8f || t[0] == 0xde || t[0] == 0xdf) {
		return Msgpack
	}
	return JSON
}

// Unmarshal decodes data in encoding e into v. Unknown fields are ignored, so
// that newer clients can talk to older workers; wrong types are errors.
func Unmarshal(e Encoding, data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return fmt.Errorf("%w: empty payload", ErrEncoding)
	}
	var err error
	if e == Msgpack {
		if err = scanMsgpack(data); err == nil {
			err = unmarshalMsgpack(data, v)
		}
	} else {
		t := bytes.TrimLeft(data, " \t\r\n")
		if t[0] != '{' {
			return fmt.Errorf("%w: JSON payload must be an object, got %s", ErrEncoding, describeJSON(t[0]))
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		if err = dec.Decode(v); err == nil && dec.More() {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %s", ErrEncoding, e, Clip(err.Error(), 200))
	}
	return nil
}

// unmarshalMsgpack turns a panic of the msgpack decoder into an error: some
// inputs (nil for a struct-typed field) make it call reflect wrongly, and a
// payload must never take a process down.
func unmarshalMsgpack(data []byte, v any) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("msgpack decoder failed: %v", p)
		}
	}()
	return msgpack.Unmarshal(data, v)
}

// Marshal encodes v in encoding e.
func Marshal(e Encoding, v any) ([]byte, error) {
	if e == Msgpack {
		return msgpack.Marshal(v)
	}
	return json.Marshal(v)
}

func describeJSON(c byte) string {
	switch {
	case c == '[':
		return "an array"
	case c == '"':
		return "a string"
	case c == 'n':
		return "null"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == '-' || (c >= '0' && c <= '9'):
		return "a number"
	}
	return fmt.Sprintf("a byte 0x%02x that starts no JSON value", c)
}

// maxMsgpackDepth bounds nesting: no bertq message nests more than a few levels.
const maxMsgpackDepth = 256

// scanMsgpack walks the first msgpack value of data without decoding it and
// refuses lengths that the rest of the payload cannot hold. The decoder
// allocates a declared array length up front when decoding into an
// interface, so five bytes could otherwise ask for tens of gigabytes.
func scanMsgpack(data []byte) error {
	pos := 0
	// pending counts the values still to read at each open nesting level.
	pending := []uint64{1}
	need := func(n uint64) error {
		if n > uint64(len(data)-pos) {
			return fmt.Errorf("msgpack value at byte %d needs %d more bytes, only %d are left", pos, n, len(data)-pos)
		}
		return nil
	}
	length := func(size int) (uint64, error) {
		if err := need(uint64(size)); err != nil {
			return 0, err
		}
		var n uint64
		for i := 0; i < size; i++ {
			n = n<<8 | uint64(data[pos+i])
		}
		pos += size
		return n, nil
	}
	for len(pending) > 0 {
		if pending[len(pending)-1] == 0 {
			pending = pending[:len(pending)-1]
			continue
		}
		pending[len(pending)-1]--
		if err := need(1); err != nil {
			return err
		}
		c := data[pos]
		pos++
		var skip, children uint64
		var err error
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			children = 2 * uint64(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			children = uint64(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = uint64(c & 0x1f)
		case c == 0xc4 || c == 0xd9:
			skip, err = length(1)
		case c == 0xc5 || c == 0xda:
			skip, err = length(2)
		case c == 0xc6 || c == 0xdb:
			skip, err = length(4)
		case c == 0xc7:
			skip, err = length(1)
			skip++
		case c == 0xc8:
			skip, err = length(2)
			skip++
		case c == 0xc9:
			skip, err = length(4)
			skip++
		case c == 0xca:
			skip = 4
		case c == 0xcb:
			skip = 8
		case c == 0xcc || c == 0xd0:
			skip = 1
		case c == 0xcd || c == 0xd1:
			skip = 2
		case c == 0xce || c == 0xd2:
			skip = 4
		case c == 0xcf || c == 0xd3:
			skip = 8
		case c >= 0xd4 && c <= 0xd8:
			skip = 1 + 1<<(c-0xd4)
		case c == 0xdc:
			children, err = length(2)
		case c == 0xdd:
			children, err = length(4)
		case c == 0xde:
			children, err = length(2)
			children *= 2
		case c == 0xdf:
			children, err = length(4)
			children *= 2
		default:
			return fmt.Errorf("invalid msgpack code 0x%02x at byte %d", c, pos-1)
		}
		if err != nil {
			return err
		}
		if err := need(skip); err != nil {
			return err
		}
		pos += int(skip)
		if children > 0 {
			// Every value takes at least one byte.
			if err := need(children); err != nil {
				return err
			}
			if len(pending) >= maxMsgpackDepth {
				return fmt.Errorf("msgpack nesting deeper than %d levels", maxMsgpackDepth)
			}
			pending = append(pending, children)
		}
	}
	return nil
}
