package schemas

import (
	"bytes"
	"encoding/json"
	"unicode/utf8"
)

// The intake and the worker decode every request; these helpers let the
// common case (valid JSON, an id given, text without lone surrogates) skip
// the generic decode into a map of raw fields. Each fast path either gives
// exactly what the full path would, or declines and leaves it to the full
// path (FuzzFastPaths checks both agree).

// plainJSON reports whether data is valid UTF-8 with no escape that may be a
// surrogate (\uD800–\uDFFF): then no JSON string in it decodes lossily (to
// U+FFFD), which is all lossyJSONString looks for.
func plainJSON(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for i := bytes.Index(data, []byte(`\u`)); i >= 0; {
		if rest := data[i+2:]; len(rest) > 0 && (rest[0] == 'd' || rest[0] == 'D') {
			return false
		}
		next := bytes.Index(data[i+2:], []byte(`\u`))
		if next < 0 {
			break
		}
		i += 2 + next
	}
	return true
}

// jsonID returns the "id" of a valid JSON object when it is a non-empty
// string and the object's member names carry no escapes; ok is false
// otherwise, and EnsureID takes the full path.
func jsonID(data []byte) (id string, ok bool) {
	if !json.Valid(data) {
		return "", false
	}
	raw, found, plain := jsonMember(data, "id")
	if !found || !plain || len(raw) < 3 || raw[0] != '"' {
		return "", false
	}
	if body := raw[1 : len(raw)-1]; bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) {
		return string(body), true // no escapes: the string is its bytes
	}
	if json.Unmarshal(raw, &id) != nil || id == "" {
		return "", false
	}
	return id, true
}

// jsonMember finds the raw value of the last top-level member named key in
// data, which must be valid JSON (json.Valid). plain is false when data is
// not an object or a member name has escapes, which only a full decode reads
// right.
func jsonMember(data []byte, key string) (raw []byte, found, plain bool) {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return nil, false, false
	}
	i = skipSpace(data, i+1)
	for i < len(data) && data[i] == '"' {
		end := skipString(data, i)
		name := data[i+1 : end-1]
		if bytes.IndexByte(name, '\\') >= 0 {
			return nil, false, false
		}
		i = skipSpace(data, end)
		i = skipSpace(data, i+1) // the ':'
		start := i
		i = skipValue(data, i)
		if string(name) == key {
			raw, found = data[start:i], true
		}
		i = skipSpace(data, i)
		if i < len(data) && data[i] == ',' {
			i = skipSpace(data, i+1)
		}
	}
	return raw, found, true
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at data[i].
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}

// skipValue returns the index just past the value starting at data[i].
func skipValue(data []byte, i int) int {
	if i >= len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for ; i < len(data); i++ {
			switch data[i] {
			case '"':
				i = skipString(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(data) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(data[i])) {
		i++
	}
	return i
}
