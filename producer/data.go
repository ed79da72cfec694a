package producer

import (
	"bufio"
	"bytes"
	_ "embed"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/bertq/bertq/schemas"
)

// Pair is one labelled MRPC sentence pair.
type Pair struct {
	// Label is MRPC's Quality: 1 = paraphrase (label index 1), 0 = not.
	Label    int
	ID1, ID2 string
	A, B     string
	// Line is the 1-based line of the pair in its file, for messages.
	Line int
}

// TSVHeader is the first line of GLUE MRPC's dev.tsv / train.tsv.
const TSVHeader = "Quality\t#1 ID\t#2 ID\t#1 String\t#2 String"

// maxLine bounds one TSV line; MRPC's longest is a few hundred bytes.
const maxLine = 1 << 20

//go:embed mrpc-sample.tsv
var sampleTSV []byte

// Sample returns the pairs of the embedded producer/mrpc-sample.tsv.
func Sample() []Pair {
	p, err := ParseTSV(bytes.NewReader(sampleTSV), "mrpc-sample.tsv")
	if err != nil {
		panic("producer: embedded sample: " + err.Error())
	}
	return p
}

// LoadTSV reads an MRPC-layout TSV file.
func LoadTSV(path string) ([]Pair, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrData, err)
	}
	defer f.Close()
	return ParseTSV(f, path)
}

// ParseTSV parses the GLUE MRPC layout: a header row, then rows of exactly
// five tab-separated fields. Fields are split on tabs only: MRPC's sentences
// contain unbalanced quote characters, so quotes are ordinary text (unlike
// encoding/csv). Sentences may be empty (the sample has one, to exercise
// the service's handling). Blank lines are skipped; name labels errors.
func ParseTSV(r io.Reader, name string) ([]Pair, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), maxLine)
	var pairs []Pair
	line := 0
	header := false
	for sc.Scan() {
		line++
		text := strings.TrimSuffix(sc.Text(), "\r")
		if line == 1 {
			text = strings.TrimPrefix(text, "\ufeff") // a BOM from spreadsheet exports
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		if !utf8.ValidString(text) {
			return nil, fmt.Errorf("%w: %s:%d: not valid UTF-8", ErrData, name, line)
		}
		if !header {
			if text != TSVHeader {
				return nil, fmt.Errorf("%w: %s:%d: want the MRPC header %q, got %q", ErrData, name, line, TSVHeader, schemas.Clip(text, 80))
			}
			header = true
			continue
		}
		f := strings.Split(text, "\t")
		if len(f) != 5 {
			return nil, fmt.Errorf("%w: %s:%d: want 5 tab-separated fields (Quality, #1 ID, #2 ID, #1 String, #2 String), got %d", ErrData, name, line, len(f))
		}
		p := Pair{ID1: f[1], ID2: f[2], A: f[3], B: f[4], Line: line}
		switch strings.TrimSpace(f[0]) {
		case "0":
			p.Label = 0
		case "1":
			p.Label = 1
		default:
			return nil, fmt.Errorf("%w: %s:%d: Quality must be 0 or 1, got %q", ErrData, name, line, schemas.Clip(f[0], 20))
		}
		pairs = append(pairs, p)
	}
	if err := sc.Err(); err != nil {
		if err == bufio.ErrTooLong {
			return nil, fmt.Errorf("%w: %s:%d: line longer than %d bytes", ErrData, name, line+1, maxLine)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrData, name, err)
	}
	if !header {
		return nil, fmt.Errorf("%w: %s: empty file (want the MRPC header %q)", ErrData, name, TSVHeader)
	}
	if len(pairs) == 0 {
		return nil, fmt.Errorf("%w: %s: no pairs after the header", ErrData, name)
	}
	return pairs, nil
}
