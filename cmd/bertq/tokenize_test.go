package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/bertq/bertq/tokenizer"
)

type encodedLine struct {
	InputIDs      []int32 `json:"input_ids"`
	TokenTypeIDs  []int32 `json:"token_type_ids"`
	AttentionMask []int32 `json:"attention_mask"`
}

func runTokenizeCmd(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), append([]string{"tokenize"}, args...),
		&env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

func decodeLines(t *testing.T, s string) []encodedLine {
	t.Helper()
	var res []encodedLine
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if l == "" {
			continue
		}
		var e encodedLine
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		res = append(res, e)
	}
	return res
}

func TestTokenizeCommand(t *testing.T) {
	big := strings.Repeat("The quick brown fox jumps over the lazy dog. ", 22_000) // ~1 MB line
	in := `{"a": "Hello, World!"}` + "\n" +
		"\n" +
		`{"a": "The company said its quarterly profit rose.", "b": "Profit climbed, it said."}` + "\r\n" +
		`{"a": "` + big + `", "b": "short"}` + "\n"
	code, out, errOut := runTokenizeCmd(t, in, "--seq", "16")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := decodeLines(t, out)
	if len(got) != 3 {
		t.Fatalf("%d output lines, want 3:\n%s", len(got), out)
	}
	want0 := encodedLine{
		InputIDs:      []int32{101, 7592, 1010, 2088, 999, 102, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		TokenTypeIDs:  make([]int32, 16),
		AttentionMask: []int32{1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
	}
	if !reflect.DeepEqual(got[0], want0) {
		t.Errorf("line 1: got %+v\nwant %+v", got[0], want0)
	}
	tok := tokenizer.Default()
	for i, p := range [][2]string{
		{"The company said its quarterly profit rose.", "Profit climbed, it said."},
		{big, "short"},
	} {
		enc, err := tok.EncodePair(p[0], p[1], 16)
		if err != nil {
			t.Fatal(err)
		}
		want := encodedLine{enc.InputIDs, enc.TokenTypeIDs, enc.AttentionMask}
		if !reflect.DeepEqual(got[i+1], want) {
			t.Errorf("output %d: got %+v\nwant %+v", i+2, got[i+1], want)
		}
	}
}

func TestTokenizeCommandErrors(t *testing.T) {
	good := `{"a": "one"}` + "\n"
	for _, c := range []struct {
		name, in string
		args     []string
		code     int
		msg      string
		lines    int // output lines written before the failure
	}{
		{"malformed JSON", good + `{"a": "two"` + "\n" + good, nil, 1, "line 2", 1},
		{"not an object", good + good + `[1, 2]` + "\n", nil, 1, "line 3", 2},
		{"missing a", `{"b": "x"}` + "\n", nil, 1, "line 1", 0},
		{"pair too long for seq 2", `{"a": "x", "b": "y"}` + "\n", []string{"--seq", "2"}, 1, "line 1", 0},
		{"seq too short", good, []string{"--seq", "1"}, 2, "--seq 1: must be between", 0},
		{"positional argument", good, []string{"extra"}, 2, "the pairs come on stdin", 0},
		{"missing vocab file", good, []string{"--vocab", filepath.Join(t.TempDir(), "none.txt")}, 1, "none.txt", 0},
	} {
		code, out, errOut := runTokenizeCmd(t, c.in, c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d mentioning %q", c.name, code, errOut, c.code, c.msg)
		}
		if n := len(decodeLines(t, out)); n != c.lines {
			t.Errorf("%s: %d output lines before the error, want %d", c.name, n, c.lines)
		}
	}
}

func TestTokenizeCommandVocab(t *testing.T) {
	vocab := filepath.Join(t.TempDir(), "vocab.txt")
	if err := os.WriteFile(vocab, []byte("[PAD]\n[UNK]\n[CLS]\n[SEP]\nHello\nhello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := `{"a": "Hello hello HELLO"}` + "\n"
	for _, c := range []struct {
		lower string
		ids   []int32
	}{
		{"false", []int32{2, 4, 5, 1, 3, 0}},
		{"true", []int32{2, 5, 5, 5, 3, 0}},
	} {
		code, out, errOut := runTokenizeCmd(t, in, "--vocab", vocab, "--lowercase="+c.lower, "--seq", "6")
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errOut)
		}
		if got := decodeLines(t, out); len(got) != 1 || !reflect.DeepEqual(got[0].InputIDs, c.ids) {
			t.Errorf("--lowercase=%s: %s, want ids %v", c.lower, out, c.ids)
		}
	}
	// The embedded vocabulary, cased: "Hello" is not in the uncased vocab.
	code, out, _ := runTokenizeCmd(t, `{"a": "Hello hello"}`+"\n", "--lowercase=false", "--seq", "5")
	if got := decodeLines(t, out); code != 0 || len(got) != 1 || !reflect.DeepEqual(got[0].InputIDs, []int32{101, 100, 7592, 102, 0}) {
		t.Errorf("embedded cased: exit %d, %s", code, out)
	}
}
