package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"unicode/utf8"
)

// pairLine is one input line of tokenize and predict.
type pairLine struct {
	A *string `json:"a"`
	B string  `json:"b"`
}

// maxLine bounds one JSON line; NATS' own payload limit is 1 MiB, so no
// real request is longer.
const maxLine = 8 << 20

// readPairs calls fn for every JSON line {"a": ..., "b": ...} of r (blank lines
// are skipped). Errors name the line.
func readPairs(r io.Reader, fn func(line int, a, b string) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		raw := sc.Bytes()
		if len(trimSpace(raw)) == 0 {
			continue
		}
		var p pairLine
		if err := json.Unmarshal(raw, &p); err != nil {
			return fmt.Errorf("line %d: not a JSON object {\"a\": ..., \"b\": ...}: %v", n, err)
		}
		if p.A == nil {
			return fmt.Errorf("line %d: missing \"a\"", n)
		}
		if !utf8.ValidString(*p.A) || !utf8.ValidString(p.B) {
			return fmt.Errorf("line %d: text is not valid UTF-8", n)
		}
		if err := fn(n, *p.A, p.B); err != nil {
			return fmt.Errorf("line %d: %w", n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", n+1, err)
	}
	return nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
