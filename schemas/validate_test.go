package schemas

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

func TestEnsureID(t *testing.T) {
	gen := func() string { return "NEW" }
	// An id given: the payload is returned byte for byte.
	in := []byte(`{"id":"abc","a":"x","unknown":{"k":[1,2]}}`)
	id, out, err := EnsureID(JSON, in, gen)
	if err != nil || id != "abc" || !bytes.Equal(out, in) {
		t.Fatalf("got %q %s %v", id, out, err)
	}
	// No id: set, other fields kept.
	for _, tc := range []struct {
		enc  Encoding
		data []byte
	}{
		{JSON, []byte(`{"a":"x","unknown":7}`)},
		{JSON, []byte(`{"id":null,"a":"x","unknown":7}`)},
		{Msgpack, validateMsgpack(t, map[string]any{"a": "x", "unknown": 7})},
	} {
		id, out, err := EnsureID(tc.enc, tc.data, gen)
		if err != nil || id != "NEW" {
			t.Fatalf("%s: %q %v", tc.data, id, err)
		}
		var m map[string]any
		if err := Unmarshal(tc.enc, out, &m); err != nil {
			t.Fatal(err)
		}
		if m["id"] != "NEW" || m["a"] != "x" || m["unknown"] == nil {
			t.Errorf("re-encoded %v", m)
		}
	}
	for _, tc := range []struct {
		data []byte
		code string
	}{
		{[]byte(`nope`), CodeBadEncoding},
		{[]byte(`[]`), CodeBadEncoding},
		{[]byte(`{"id":1}`), CodeBadRequest},
		{[]byte(`{"id":"` + strings.Repeat("x", MaxIDLen+1) + `"}`), CodeBadRequest},
	} {
		if _, _, err := EnsureID(JSON, tc.data, gen); err == nil || err.Code != tc.code {
			t.Errorf("%.40s: %v, want %s", tc.data, err, tc.code)
		}
	}
}

func validateMsgpack(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeInferRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		enc  Encoding
		data []byte
		code string // "" for success
	}{
		{"ok", JSON, []byte(`{"id":"1","a":"x","b":"y"}`), ""},
		{"honest replacement char", JSON, []byte(`{"a":"bad \ufffd and ` + "\uFFFD" + `"}`), ""},
		{"syntax", JSON, []byte(`{"a":`), CodeBadEncoding},
		{"type", JSON, []byte(`{"a":["x"]}`), CodeBadRequest},
		{"invalid utf8", JSON, []byte("{\"a\":\"\xff\"}"), CodeInvalidUTF8},
		{"lone surrogate", JSON, []byte(`{"b":"\udc00"}`), CodeInvalidUTF8},
		{"msgpack ok", Msgpack, validateMsgpack(t, map[string]any{"a": "x"}), ""},
		{"msgpack type", Msgpack, validateMsgpack(t, map[string]any{"a": 1}), CodeBadRequest},
		{"msgpack not a map", Msgpack, validateMsgpack(t, []int{1}), CodeBadEncoding},
		{"msgpack invalid utf8", Msgpack, validateMsgpack(t, map[string]any{"a": "\xff"}), CodeInvalidUTF8},
	} {
		var r InferRequest
		err := DecodeInferRequest(tc.enc, tc.data, &r)
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.code != "" && (err == nil || err.Code != tc.code):
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
}

func TestValidate(t *testing.T) {
	s := Shape{Seq: 4, VocabSize: 10, TypeVocabSize: 2}
	now := time.Now()
	ids := []int32{1, 2, 3, 0}
	for _, tc := range []struct {
		name string
		r    InferRequest
		code string
	}{
		{"text", InferRequest{A: "x"}, ""},
		{"b only", InferRequest{B: "x"}, ""},
		{"ids only", InferRequest{InputIDs: ids}, ""},
		{"ids full", InferRequest{InputIDs: ids, TokenTypeIDs: []int32{0, 0, 1, 1}, AttentionMask: []int32{1, 1, 1, 0}}, ""},
		{"future deadline", InferRequest{A: "x", Deadline: now.Add(time.Second)}, ""},
		{"nothing", InferRequest{}, CodeMissingField},
		{"no ids", InferRequest{AttentionMask: []int32{1, 1, 1, 1}}, CodeMissingField},
		{"both", InferRequest{A: "x", InputIDs: ids}, CodeBadRequest},
		{"short", InferRequest{InputIDs: ids[:3]}, CodeWrongLength},
		{"empty ids", InferRequest{InputIDs: []int32{}}, CodeWrongLength},
		{"types len", InferRequest{InputIDs: ids, TokenTypeIDs: []int32{0}}, CodeWrongLength},
		{"mask len", InferRequest{InputIDs: ids, AttentionMask: []int32{1, 1, 1, 1, 1}}, CodeWrongLength},
		{"oov", InferRequest{InputIDs: []int32{1, 10, 0, 0}}, CodeOutOfRange},
		{"negative", InferRequest{InputIDs: []int32{-1, 1, 0, 0}}, CodeOutOfRange},
		{"type", InferRequest{InputIDs: ids, TokenTypeIDs: []int32{0, 2, 0, 0}}, CodeOutOfRange},
		{"mask value", InferRequest{InputIDs: ids, AttentionMask: []int32{1, 3, 0, 0}}, CodeOutOfRange},
		{"mask zeros", InferRequest{InputIDs: ids, AttentionMask: []int32{0, 0, 0, 0}}, CodeBadRequest},
		{"deadline", InferRequest{A: "x", Deadline: now}, CodeDeadline},
		{"version", InferRequest{V: Version + 1, A: "x"}, CodeBadRequest},
	} {
		err := tc.r.Validate(s, now)
		switch {
		case tc.code == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.code != "" && (err == nil || err.Code != tc.code):
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
		if err != nil && (err.Message == "" || !json.Valid(validateJSON(t, err))) {
			t.Errorf("%s: message %q", tc.name, err.Message)
		}
	}
}

func validateJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeCompileJob(t *testing.T) {
	var j CompileJob
	if err := DecodeCompileJob(JSON, []byte(`{"id":"1","name":"m-1","source":"synthetic:bert-large"}`), &j); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{`{"id":"1","name":"a b","source":"x"}`, `{"id":"1","name":"m"}`, `{"id":"1","name":"m","source":"x","seq":"x"}`} {
		var j CompileJob
		if err := DecodeCompileJob(JSON, []byte(bad), &j); err == nil || err.Code != CodeBadCompileJob {
			t.Errorf("%s: %v", bad, err)
		}
	}
}
