package schemas

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
)

// The fuzz targets below cover every decoder of the wire contract: the codec
// (Detect, Unmarshal), EnsureID/PeekID (the intake), DecodeInferRequest with
// Validate (the worker) and DecodeCompileJob (intake and compile worker).
// Their invariants: no panic, every failure is an *Error with a known code
// and a bounded, valid UTF-8 message, and what decodes re-encodes.

// knownCodes are the codes a decoder may answer with.
var knownCodes = map[string]bool{
	CodeBadEncoding: true, CodeBadRequest: true, CodeMissingField: true, CodeInvalidUTF8: true,
	CodeOutOfRange: true, CodeWrongLength: true, CodeDeadline: true, CodeBadCompileJob: true,
}

// maxMessage bounds an error message: messages quote user input only clipped.
const maxMessage = 1024

func checkError(t *testing.T, what string, e *Error) {
	t.Helper()
	if e == nil {
		return
	}
	if !knownCodes[e.Code] {
		t.Fatalf("%s: unknown code %q (%s)", what, e.Code, e.Message)
	}
	if e.Message == "" || len(e.Message) > maxMessage || !utf8.ValidString(e.Message) {
		t.Fatalf("%s: message of %d bytes, valid UTF-8 %v: %.200q", what, len(e.Message), utf8.ValidString(e.Message), e.Message)
	}
}

// seeds are payloads of every shape the decoders meet, good and bad.
func seeds(t testing.TB) [][]byte {
	mp := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ids := make([]int32, 128)
	ids[0], ids[1] = 101, 102
	out := [][]byte{
		nil, {}, []byte(" "), []byte("null"), []byte("[]"), []byte(`"x"`), []byte("1e400"), []byte("{"),
		[]byte(`{"id":"1","a":"The cat sat.","b":"A cat was sitting."}`),
		[]byte(`{"v":1,"id":"2","model":"m","a":"x","deadline":"2030-01-02T03:04:05Z"}`),
		[]byte(`{"id":"3","input_ids":[101,102],"token_type_ids":[0,0],"attention_mask":[1,1]}`),
		[]byte(`{"id":"4","input_ids":[4294967297]}`),
		[]byte(`{"id":"5","input_ids":[1e400]}`),
		[]byte(`{"id":"6","a":"\ud800"}`),
		[]byte("{\"id\":\"7\",\"a\":\"\xff\"}"),
		[]byte(`{"id":8}`),
		[]byte(`{"v":99,"a":"x"}`),
		[]byte(`{"a":"x"} {"a":"y"}`),
		[]byte(`{"id":"9","name":"tiny","source":"checkpoint:tiny","batch":4,"seq":128,"precision":"fp32","gelu":"exact"}`),
		[]byte(`{"id":"10","name":"a b","source":""}`),
		mp(map[string]any{"id": "m1", "a": "x", "b": "y"}),
		mp(map[string]any{"id": "m2", "input_ids": ids}),
		mp(map[string]any{"id": "m3", "input_ids": []int64{1 << 40}}),
		mp(map[string]any{"id": "m4", "input_ids": []float64{math.NaN(), math.Inf(1)}}),
		mp(map[string]any{"id": "m5", "a": "\xff"}),
		mp(map[string]any{"id": "m6", "deadline": time.Unix(1, 0)}),
		mp(map[string]any{"b": nil, "a": "x"}),
		mp(map[string]any{"id": "m7", "name": "n", "source": "synthetic:bert-large", "batch": 10000}),
		mp([]any{1, "x"}),
		{0xc1},
		append(append([]byte{0x81, 0xa9}, "input_ids"...), 0xdd, 0xff, 0xff, 0xff, 0xff), // array length bomb
		{0x81, 0xa1, 'a', 0xdb, 0x7f, 0xff, 0xff, 0xff},                                  // string length bomb
		{0x81, 0xa1, 'x', 0xdf, 0xff, 0xff, 0xff, 0xff},                                  // map length bomb
		[]byte(strings.Repeat("[", 20000)),
		bytes.Repeat([]byte{0x91}, 20000), // deep msgpack nesting
	}
	return out
}

func FuzzCodec(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add("", s)
		f.Add(ContentTypeMsgpack, s)
	}
	f.Add("application/json; charset=utf-8", []byte(`{"a":1}`))
	f.Add("text/plain; bogus", []byte(`{}`))
	f.Fuzz(func(t *testing.T, contentType string, data []byte) {
		enc := Detect(contentType, data)
		if enc != JSON && enc != Msgpack {
			t.Fatalf("Detect: %v", enc)
		}
		var m map[string]any
		err := Unmarshal(enc, data, &m)
		if err != nil {
			if !strings.HasPrefix(err.Error(), ErrEncoding.Error()) || len(err.Error()) > maxMessage {
				t.Fatalf("Unmarshal error %.200q", err)
			}
			return
		}
		if enc == JSON {
			// What JSON decodes into a map, JSON encodes again.
			b, err := Marshal(JSON, m)
			if err != nil {
				t.Fatalf("re-encoding %v: %v", m, err)
			}
			var again map[string]any
			if err := Unmarshal(JSON, b, &again); err != nil {
				t.Fatalf("decoding the re-encoding %s: %v", b, err)
			}
		}
	})
}

func FuzzEnsureID(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, asMsgpack bool, data []byte) {
		enc := JSON
		if asMsgpack {
			enc = Msgpack
		}
		id, out, e := EnsureID(enc, data, func() string { return "NEWID" })
		checkError(t, "EnsureID", e)
		if e != nil {
			return
		}
		if id == "" || len(id) > MaxIDLen || !utf8.ValidString(id) {
			t.Fatalf("EnsureID accepted id %.80q", id)
		}
		if id != "NEWID" && !bytes.Equal(out, data) {
			t.Fatal("a payload with its own id must pass unchanged")
		}
		if got := PeekID(enc, out); got != id {
			t.Fatalf("PeekID of the output %q, want %q", got, id)
		}
		// The output keeps every field of the input, values intact.
		in, _ := decodeFields(enc, data)
		got, e := decodeFields(enc, out)
		if e != nil {
			t.Fatalf("the output does not decode: %v", e)
		}
		for _, k := range keys(in) {
			a, _ := in.raw(k)
			b, ok := got.raw(k)
			if k != "id" && (!ok || !sameValue(enc, a, b)) {
				t.Fatalf("field %q changed: %x → %x", k, a, b)
			}
		}
	})
}

// sameValue compares two encoded values; JSON may re-escape a string.
func sameValue(enc Encoding, a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	if enc != JSON {
		return false
	}
	var va, vb any
	return json.Unmarshal(a, &va) == nil && json.Unmarshal(b, &vb) == nil && reflect.DeepEqual(va, vb)
}

func keys(f *rawFields) []string {
	var out []string
	for k := range f.js {
		out = append(out, k)
	}
	for k := range f.mp {
		out = append(out, k)
	}
	return out
}

func FuzzDecodeInferRequest(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(false, s)
		f.Add(true, s)
	}
	shape := Shape{Seq: 128, VocabSize: 30522, TypeVocabSize: 2}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, asMsgpack bool, data []byte) {
		enc := JSON
		if asMsgpack {
			enc = Msgpack
		}
		var req InferRequest
		e := DecodeInferRequest(enc, data, &req)
		checkError(t, "DecodeInferRequest", e)
		if e != nil {
			return
		}
		for _, s := range []string{req.A, req.B, req.ID} {
			if !utf8.ValidString(s) {
				t.Fatalf("decoded text is not valid UTF-8: %.80q", s)
			}
		}
		ve := req.Validate(shape, now)
		checkError(t, "Validate", ve)
		if ve == nil && req.Tokenized() {
			// Valid ids are in range, whatever their encoding was.
			for _, id := range req.InputIDs {
				if id < 0 || int(id) >= shape.VocabSize {
					t.Fatalf("Validate accepted id %d", id)
				}
			}
		}
		// A decoded request re-encodes, and decodes again to the same ids.
		b, err := Marshal(enc, &req)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		var again InferRequest
		if e := DecodeInferRequest(enc, b, &again); e != nil {
			t.Fatalf("decoding the re-encoding: %v", e)
		}
		if again.ID != req.ID || again.A != req.A || again.B != req.B || len(again.InputIDs) != len(req.InputIDs) {
			t.Fatalf("round trip changed the request: %+v → %+v", req, again)
		}
	})
}

func FuzzDecodeCompileJob(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(false, s)
		f.Add(true, s)
	}
	f.Fuzz(func(t *testing.T, asMsgpack bool, data []byte) {
		enc := JSON
		if asMsgpack {
			enc = Msgpack
		}
		var job CompileJob
		e := DecodeCompileJob(enc, data, &job)
		checkError(t, "DecodeCompileJob", e)
		if e != nil {
			return
		}
		if !ValidName(job.Name) || job.Source == "" || len(job.ID) > MaxIDLen {
			t.Fatalf("accepted job %+v", job)
		}
		b, err := Marshal(enc, &job)
		if err != nil {
			t.Fatalf("re-encoding: %v", err)
		}
		var again CompileJob
		if e := DecodeCompileJob(enc, b, &again); e != nil || again != job {
			t.Fatalf("round trip: %+v → %+v (%v)", job, again, e)
		}
	})
}

// TestDecodeWideIDs pins the fix found by bad-input testing: msgpack decoded
// a 64-bit id into int32 by wrapping it silently into another, valid id.
func TestDecodeWideIDs(t *testing.T) {
	mp := func(v any) []byte {
		b, err := msgpack.Marshal(map[string]any{"id": "w", "input_ids": v})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name string
		enc  Encoding
		data []byte
		code string
	}{
		{"msgpack int64", Msgpack, mp([]int64{1<<32 + 101, 102}), CodeOutOfRange},
		{"msgpack uint64", Msgpack, mp([]uint64{1 << 63}), CodeOutOfRange},
		{"msgpack negative", Msgpack, mp([]int64{-1 << 40}), CodeOutOfRange},
		{"msgpack NaN", Msgpack, mp([]float64{math.NaN()}), CodeBadRequest},
		{"msgpack Inf", Msgpack, mp([]float64{math.Inf(-1)}), CodeBadRequest},
		{"json 2^32", JSON, []byte(`{"input_ids":[4294967397]}`), CodeOutOfRange},
		{"json 1e400", JSON, []byte(`{"input_ids":[1e400]}`), CodeBadRequest},
		{"json fraction", JSON, []byte(`{"input_ids":[1.5]}`), CodeBadRequest},
		{"msgpack small ints", Msgpack, mp([]int8{1, 2}), ""},
		{"json int32 min", JSON, []byte(`{"input_ids":[-2147483648]}`), ""},
	} {
		var r InferRequest
		e := DecodeInferRequest(tc.enc, tc.data, &r)
		switch {
		case tc.code == "" && e != nil:
			t.Errorf("%s: %v", tc.name, e)
		case tc.code != "" && (e == nil || e.Code != tc.code):
			t.Errorf("%s: %v, want %s", tc.name, e, tc.code)
		}
		if e != nil && tc.code == CodeBadRequest && !strings.Contains(e.Message, `"input_ids"`) {
			t.Errorf("%s: the message should name the field: %s", tc.name, e.Message)
		}
	}
	// Messages echo user text only clipped, at a rune boundary.
	long := strings.Repeat("é", 300)
	var j CompileJob
	e := DecodeCompileJob(JSON, []byte(`{"id":"x","name":"`+long+`","source":"s"}`), &j)
	if e == nil || !utf8.ValidString(e.Message) || len(e.Message) > maxMessage {
		t.Fatalf("%v", e)
	}
	if _, err := json.Marshal(e); err != nil {
		t.Fatal(err)
	}
}

func TestValidReplySubject(t *testing.T) {
	for s, want := range map[string]bool{
		"_INBOX.abc":                           true,
		"_INBOX.producer.Xy12.3":               true,
		"_INBOX.bertq.run123.c4":               true,
		"":                                     false,
		"_INBOX.":                              false,
		"_INBOX":                               false,
		"_INBOX..x":                            false,
		"_INBOX.x.":                            false,
		"_INBOX.>":                             false,
		"_INBOX.*.x":                           false,
		"_INBOX.a b":                           false,
		"_INBOX.a\tb":                          false,
		"_INBOX.a\x1b[31m":                     false,
		"$JS.API.STREAM.PURGE.BERTQ_INFER":     false,
		"$JS.ACK.BERTQ_INFER.w.1.2.3.4.5.0":    false,
		"bertq.work.infer.m":                   false,
		"_inbox.x":                             false,
		"_INBOX." + strings.Repeat("x", 600):   false,
		"$SRV.PING":                            false,
		"_INBOXX.a":                            false,
		"_INBOX.a.b.c.d.e.f.g.h.i.j.k.l.m.n.o": true,
	} {
		if got := ValidReplySubject(s); got != want {
			t.Errorf("ValidReplySubject(%q) = %v, want %v", s, got, want)
		}
	}
}

// FuzzFastPaths: the one-pass decodes of the common case (EnsureID's jsonID,
// DecodeInferRequest's struct decode of plain JSON) agree with the full
// decodes on every input: same result, same error code.
func FuzzFastPaths(f *testing.F) {
	for _, s := range seeds(f) {
		f.Add(s)
	}
	for _, s := range []string{
		`{"a":"\xff","A":"ok","id":"x"}`, `{"A":"\xff","id":"y"}`, `{"id":"a","id":"b"}`, `{"id":"a","ID":"b"}`,
		`{"i\u0064":"esc"}`, `{"id":"\ud83d\ude00"}`, `{"id":""}`, `{"id":null}`, ` {"x":[1,{"id":"no"}],"id":"yes"} `,
		`{"a":"x"}]`, `{"id":"\u00e9t\u00e9","a":"\"quoted\""}`, `{"input_ids":[1,2.0,3e0],"id":"n"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		gen := func() string { return "NEWID" }
		id, out, e := EnsureID(JSON, data, gen)
		fid, fout, fe := ensureIDFull(JSON, data, gen)
		if id != fid || !bytes.Equal(out, fout) || (e == nil) != (fe == nil) || (e != nil && e.Code != fe.Code) {
			t.Fatalf("EnsureID %q %.80q %v; the full decode %q %.80q %v", id, out, e, fid, fout, fe)
		}
		var req, full InferRequest
		e = DecodeInferRequest(JSON, data, &req)
		fe = decodeInferRequestFull(JSON, data, &full)
		if (e == nil) != (fe == nil) || (e != nil && e.Code != fe.Code) {
			t.Fatalf("DecodeInferRequest %v; the full decode %v", e, fe)
		}
		if e == nil && !reflect.DeepEqual(req, full) {
			t.Fatalf("DecodeInferRequest %+v; the full decode %+v", req, full)
		}
	})
}
