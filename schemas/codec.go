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
		err = msgpack.Unmarshal(data, v)
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
		return fmt.Errorf("%w: %s: %s", ErrEncoding, e, truncate(err.Error(), 200))
	}
	return nil
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

// truncate bounds error text that may echo user input.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
