package badinput_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// class is one kind of bad input. run sends it and checks the answer; it
// returns where the input was stopped, as observed, and the error code it
// got. want is where it must be stopped (TestBadInput compares the two).
type class struct {
	name string
	want string
	run  func(t *testing.T, h *harness) (stoppedAt, code string)
}

// stopAt sets where each of cs must be stopped, unless a class says itself.
func stopAt(stage string, cs ...class) []class {
	for i := range cs {
		if cs[i].want == "" {
			cs[i].want = stage
		}
	}
	return cs
}

func mp(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func js(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// seq128 is a well-formed pre-tokenized input: [CLS] tokens [SEP] padding.
func seq128() []int32 {
	ids := make([]int32, 128)
	copy(ids, []int32{101, 7592, 2088, 102})
	return ids
}

func mask128() []int32 {
	m := make([]int32, 128)
	for i := range 4 {
		m[i] = 1
	}
	return m
}

func with(ids []int32, i int, v int32) []int32 {
	out := append([]int32(nil), ids...)
	out[i] = v
	return out
}

// checkError checks an error reply: the code, a message a user can act on
// (naming what to fix: hint), and the error header.
func checkError(t *testing.T, resp *nats.Msg, r schemas.InferReply, code, hint string) {
	t.Helper()
	if r.Error == nil {
		t.Fatalf("want error %s, got a prediction %+v", code, r)
	}
	if r.Error.Code != code {
		t.Fatalf("code %q (%s), want %q", r.Error.Code, r.Error.Message, code)
	}
	msg := r.Error.Message
	if len(msg) < 12 || len(msg) > 1024 || strings.Contains(msg, "panic") || strings.Contains(msg, "runtime error") {
		t.Fatalf("message %q is not one a user can act on", msg)
	}
	if !strings.Contains(strings.ToLower(msg), strings.ToLower(hint)) {
		t.Fatalf("message %q does not mention %q", msg, hint)
	}
	if got := resp.Header.Get(schemas.HeaderErrorCode); got != code {
		t.Fatalf("header %s = %q, want %q", schemas.HeaderErrorCode, got, code)
	}
}

// infer is a class sent to the model's intake subject.
func infer(name, contentType string, body func(t *testing.T, id string) []byte, code, hint string) class {
	return inferTo(name, schemas.InferSubject(model), contentType, body, code, hint)
}

func inferTo(name, subject, contentType string, body func(t *testing.T, id string) []byte, code, hint string) class {
	return class{name: name, run: func(t *testing.T, h *harness) (string, string) {
		before := h.consumerInfo(t, schemas.InferStream, schemas.WorkerDurable(model))
		id := h.id("bad")
		resp, r := h.request(t, subject, contentType, body(t, id))
		after := h.settled(t, schemas.InferStream, schemas.WorkerDurable(model))
		at := "intake"
		if after.Delivered.Consumer > before.Delivered.Consumer {
			at = "worker"
		}
		if code == "" {
			if r.Error != nil || len(r.Probabilities) != 2 {
				t.Fatalf("want a prediction, got %+v", r)
			}
			return at, "served"
		}
		checkError(t, resp, r, code, hint)
		return at, r.Error.Code
	}}
}

// raw returns a body that ignores the id.
func raw(b []byte) func(*testing.T, string) []byte {
	return func(*testing.T, string) []byte { return b }
}

// refusedLog is the line the intake and the worker log when they refuse a
// request whose reply subject is not an inbox.
const refusedLog = "request refused: its reply subject is not an inbox"

// notInbox checks that a request whose reply subject is not an inbox is
// refused without anything being published there, and that the service that
// refused it logs why. Where it was stopped is the component of that line.
func notInbox(name, target string, viaIntake bool) class {
	return class{name: name, run: func(t *testing.T, h *harness) (string, string) {
		sub, err := h.nc.SubscribeSync(target)
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := h.nc.Flush(); err != nil {
			t.Fatal(err)
		}
		st, err := h.js.Stream(context.Background(), schemas.InferStream)
		if err != nil {
			t.Fatal(err)
		}
		lastSeq := st.CachedInfo().State.LastSeq
		bad := h.w.Stats().Errors[schemas.CodeBadRequest]
		id := h.id("reply")
		body := fmt.Appendf(nil, `{"id":%q,"a":"x"}`, id)
		mark := h.logMark()
		// Only this request is in flight after the mark; the worker also
		// names the request it refused.
		want := map[string]string{"message": refusedLog, "reply_to": schemas.Clip(target, 64)}
		if viaIntake {
			if err := h.nc.PublishMsg(&nats.Msg{Subject: schemas.InferSubject(model), Reply: target, Data: body}); err != nil {
				t.Fatal(err)
			}
		} else {
			want["id"] = id
			h.direct(t, schemas.WorkSubject(model), nats.Header{schemas.HeaderReplyTo: {target}, schemas.HeaderMsgID: {id}}, body)
		}
		line := h.waitLog(t, mark, want)
		if line == nil {
			t.Fatalf("no log line %v tells the operator why request %s was refused", want, id)
		}
		at, _ := line["component"].(string)
		h.settled(t, schemas.InferStream, schemas.WorkerDurable(model))
		silent(t, sub, 200*time.Millisecond)
		st, err = h.js.Stream(context.Background(), schemas.InferStream)
		if err != nil {
			t.Fatal(err)
		}
		if viaIntake {
			if st.CachedInfo().State.LastSeq != lastSeq {
				t.Fatal("the intake queued a request whose reply subject is not an inbox")
			}
		} else if got := h.w.Stats().Errors[schemas.CodeBadRequest]; got != bad+1 {
			t.Fatalf("worker bad_request count %d → %d, want +1", bad, got)
		}
		return at, "refused, no reply"
	}}
}

// compileJob is a class sent to the compile intake (bert.compile).
func compileJob(name string, job schemas.CompileJob, code, hint string) class {
	return class{name: name, run: func(t *testing.T, h *harness) (string, string) {
		before := h.consumerInfo(t, schemas.CompileStream, schemas.CompilerDurable)
		job.ID = h.id("job")
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := compiler.Submit(ctx, h.nc, job, compiler.WithSubmitTimeout(60*time.Second))
		var e *schemas.Error
		if !errors.As(err, &e) {
			t.Fatalf("want a %s result, got %+v, %v", code, res, err)
		}
		if e.Code != code || len(e.Message) < 12 || len(e.Message) > 1024 ||
			!strings.Contains(strings.ToLower(e.Message), strings.ToLower(hint)) {
			t.Fatalf("got %s: %q; want %s mentioning %q", e.Code, e.Message, code, hint)
		}
		after := h.settled(t, schemas.CompileStream, schemas.CompilerDurable)
		if after.NumRedelivered != before.NumRedelivered {
			t.Fatalf("compile job redelivered: %d → %d", before.NumRedelivered, after.NumRedelivered)
		}
		at := "intake"
		if after.Delivered.Consumer > before.Delivered.Consumer {
			at = "compile worker"
		}
		return at, e.Code
	}}
}

// artifactClass stores bad artifact bytes and checks that FetchArtifact
// refuses them.
func artifactClass(name string, damage func([]byte) []byte, hint string) class {
	return class{name: name, run: func(t *testing.T, h *harness) (string, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		obs, err := h.js.ObjectStore(ctx, schemas.ModelBucket)
		if err != nil {
			t.Fatal(err)
		}
		good, err := obs.GetBytes(ctx, model)
		if err != nil {
			t.Fatal(err)
		}
		obj := "damaged-" + fmt.Sprint(h.seq.Add(1))
		if _, err := obs.PutBytes(ctx, obj, damage(bytes.Clone(good))); err != nil {
			t.Fatal(err)
		}
		f, err := worker.FetchArtifact(ctx, h.js, obj, t.TempDir())
		if err == nil {
			f.Close()
			t.Fatal("FetchArtifact accepted a damaged artifact")
		}
		if !errors.Is(err, worker.ErrArtifact) || !strings.Contains(err.Error(), hint) {
			t.Fatalf("error %v: want worker.ErrArtifact mentioning %q", err, hint)
		}
		return "FetchArtifact", "ErrArtifact"
	}}
}

func classes(t *testing.T) []class {
	ids, mask := seq128(), mask128()
	nan := mp(t, map[string]any{"id": "nan", "input_ids": []float64{101, math.NaN(), 102}})
	inf := mp(t, map[string]any{"id": "inf", "input_ids": []float64{101, math.Inf(1), 102}})
	big := strings.Repeat("the quick brown fox jumps over the lazy dog ", 900*1024/44)
	deep := strings.Repeat(`{"x":`, 10001) + "1" + strings.Repeat("}", 10001)
	bomb := append(append([]byte{0x82, 0xa2, 'i', 'd', 0xa1, 'x', 0xa9}, "input_ids"...), 0xdd, 0xff, 0xff, 0xff, 0xff)
	body := func(v map[string]any) func(*testing.T, string) []byte {
		return func(t *testing.T, id string) []byte {
			v["id"] = id
			return js(t, v)
		}
	}
	mbody := func(v map[string]any) func(*testing.T, string) []byte {
		return func(t *testing.T, id string) []byte {
			v["id"] = id
			return mp(t, v)
		}
	}
	return slices.Concat(
		// Undecodable or of the wrong shape: refused at the intake (the
		// 10 MB text by the client library, which never sends it).
		stopAt("intake",
			infer("empty payload", "", raw(nil), schemas.CodeBadEncoding, "empty"),
			infer("invalid JSON", "", raw([]byte(`{"a": "x",`)), schemas.CodeBadEncoding, "json"),
			infer("invalid msgpack", schemas.ContentTypeMsgpack, raw([]byte{0xc1, 0x00}), schemas.CodeBadEncoding, "msgpack"),
			infer("JSON array", "", raw([]byte(`["a","b"]`)), schemas.CodeBadEncoding, "an array"),
			infer("JSON string", "", raw([]byte(`"a"`)), schemas.CodeBadEncoding, "a string"),
			infer("JSON number", "", raw([]byte(`42`)), schemas.CodeBadEncoding, "a number"),
			infer("JSON null", "", raw([]byte(`null`)), schemas.CodeBadEncoding, "null"),
			infer("JSON with trailing data", "", raw([]byte(`{"a":"x"} {"a":"y"}`)), schemas.CodeBadEncoding, "trailing"),
			infer("JSON nested 10001 deep", "", raw([]byte(deep)), schemas.CodeBadEncoding, "depth"),
			infer("msgpack array", schemas.ContentTypeMsgpack, raw(mp(t, []any{"a", 1})), schemas.CodeBadEncoding, "msgpack"),
			infer("msgpack length bomb (4G elements in 20 bytes)", schemas.ContentTypeMsgpack, raw(bomb), schemas.CodeBadEncoding, "bytes"),
			infer("non-string id", "", raw([]byte(`{"id":7,"a":"x"}`)), schemas.CodeBadRequest, `"id"`),
			infer("id too long", "", func(t *testing.T, _ string) []byte {
				return js(t, map[string]any{"id": strings.Repeat("x", schemas.MaxIDLen+1), "a": "x"})
			}, schemas.CodeBadRequest, "at most 256"),
			inferTo("unknown model", schemas.InferSubject("nosuch"), "", body(map[string]any{"a": "x"}), schemas.CodeUnknownModel, "compile or upload"),
			inferTo("invalid model name", schemas.InferSubject("no$such"), "", body(map[string]any{"a": "x"}), schemas.CodeUnknownModel, "not a model name"),
			class{name: "duplicate id", run: func(t *testing.T, h *harness) (string, string) {
				id := h.id("dup")
				b := fmt.Appendf(nil, `{"id":%q,"a":"x"}`, id)
				if _, r := h.request(t, schemas.InferSubject(model), "", b); r.Error != nil {
					t.Fatalf("first request: %v", r.Error)
				}
				before := h.settled(t, schemas.InferStream, schemas.WorkerDurable(model))
				resp, r := h.request(t, schemas.InferSubject(model), "", b)
				checkError(t, resp, r, schemas.CodeDuplicate, "fresh id")
				after := h.settled(t, schemas.InferStream, schemas.WorkerDurable(model))
				if after.Delivered.Consumer > before.Delivered.Consumer {
					return "worker", r.Error.Code
				}
				return "intake", r.Error.Code
			}},
			notInbox("reply subject not an inbox, via the intake", "$JS.API.STREAM.PURGE."+schemas.InferStream, true),
			class{name: "text of 10 MB (over max_payload)", want: "client", run: func(t *testing.T, h *harness) (string, string) {
				b := fmt.Appendf(nil, `{"a":%q}`, strings.Repeat("x", 10<<20))
				_, err := h.nc.Request(schemas.InferSubject(model), b, 5*time.Second)
				if !errors.Is(err, nats.ErrMaxPayload) {
					t.Fatalf("got %v, want nats.ErrMaxPayload", err)
				}
				return "client", "nats.ErrMaxPayload"
			}},
		),
		// Decodable but wrong: the intake queues it, the worker refuses it.
		stopAt("worker",
			infer("wrong field type (a: number)", "", body(map[string]any{"a": 5}), schemas.CodeBadRequest, `"a"`),
			infer("wrong field type (input_ids: string)", "", body(map[string]any{"input_ids": "abc"}), schemas.CodeBadRequest, `"input_ids"`),
			infer("wrong field type (deadline: not a time)", "", body(map[string]any{"a": "x", "deadline": "tomorrow"}), schemas.CodeBadRequest, `"deadline"`),
			infer("wrong field type (msgpack b: array)", schemas.ContentTypeMsgpack, mbody(map[string]any{"a": "x", "b": []int{1}}), schemas.CodeBadRequest, `"b"`),
			infer("text not UTF-8 (JSON)", "", func(_ *testing.T, id string) []byte {
				return fmt.Appendf(nil, "{\"id\":%q,\"a\":\"caf\xe9\"}", id)
			}, schemas.CodeInvalidUTF8, "UTF-8"),
			infer("text with a lone surrogate (JSON)", "", func(_ *testing.T, id string) []byte {
				return fmt.Appendf(nil, `{"id":%q,"a":"x\ud800y"}`, id)
			}, schemas.CodeInvalidUTF8, "UTF-8"),
			infer("text not UTF-8 (msgpack)", schemas.ContentTypeMsgpack, mbody(map[string]any{"a": "ok", "b": "\xc3\x28"}), schemas.CodeInvalidUTF8, "UTF-8"),
			infer("id not UTF-8", "", func(_ *testing.T, id string) []byte {
				return fmt.Appendf(nil, "{\"id\":\"%s\xff\",\"a\":\"x\"}", id)
			}, schemas.CodeInvalidUTF8, "UTF-8"),
			infer("missing text", "", body(map[string]any{}), schemas.CodeMissingField, `"a"`),
			infer("token_type_ids without input_ids", "", body(map[string]any{"token_type_ids": make([]int32, 128)}), schemas.CodeMissingField, `"input_ids" is required`),
			infer("both text and ids", "", body(map[string]any{"a": "x", "input_ids": ids}), schemas.CodeBadRequest, "not both"),
			infer("future schema version v=99", "", body(map[string]any{"v": 99, "a": "x"}), schemas.CodeBadRequest, "v=99"),
			infer("ids out of vocab range", "", body(map[string]any{"input_ids": with(ids, 1, 30522)}), schemas.CodeOutOfRange, "vocabulary"),
			infer("negative ids", "", body(map[string]any{"input_ids": with(ids, 1, -5)}), schemas.CodeOutOfRange, "vocabulary"),
			infer("id beyond 32 bits (msgpack; wrapped silently before)", schemas.ContentTypeMsgpack, func(t *testing.T, id string) []byte {
				wide := make([]int64, 128)
				for i, v := range ids {
					wide[i] = int64(v)
				}
				wide[1] = 1<<32 + 7592 // would wrap to 7592, a valid token
				return mp(t, map[string]any{"id": id, "input_ids": wide})
			}, schemas.CodeOutOfRange, "32-bit"),
			infer("id beyond 32 bits (JSON)", "", func(_ *testing.T, id string) []byte {
				s := strings.Replace(string(js(t, ids)), "7592", "4294974888", 1)
				return fmt.Appendf(nil, `{"id":%q,"input_ids":%s}`, id, s)
			}, schemas.CodeOutOfRange, "32-bit"),
			infer("wrong sequence length", "", body(map[string]any{"input_ids": ids[:127]}), schemas.CodeWrongLength, "exactly 128"),
			infer("mismatched token_type_ids length", "", body(map[string]any{"input_ids": ids, "token_type_ids": make([]int32, 64)}), schemas.CodeWrongLength, "token_type_ids"),
			infer("mismatched attention_mask length", "", body(map[string]any{"input_ids": ids, "attention_mask": mask[:100]}), schemas.CodeWrongLength, "attention_mask"),
			infer("token type out of range", "", body(map[string]any{"input_ids": ids, "token_type_ids": with(make([]int32, 128), 3, 2)}), schemas.CodeOutOfRange, "token_type_ids[3]"),
			infer("attention mask value 2", "", body(map[string]any{"input_ids": ids, "attention_mask": with(mask, 0, 2)}), schemas.CodeOutOfRange, "0 or 1"),
			infer("attention mask of all zeros", "", body(map[string]any{"input_ids": ids, "attention_mask": make([]int32, 128)}), schemas.CodeBadRequest, "all zeros"),
			infer("NaN in input_ids (msgpack float)", schemas.ContentTypeMsgpack, raw(nan), schemas.CodeBadRequest, "array of integers"),
			infer("Inf in input_ids (msgpack float)", schemas.ContentTypeMsgpack, raw(inf), schemas.CodeBadRequest, "array of integers"),
			infer("number 1e400 in input_ids (JSON)", "", func(_ *testing.T, id string) []byte {
				return fmt.Appendf(nil, `{"id":%q,"input_ids":[101,1e400,102]}`, id)
			}, schemas.CodeBadRequest, "array of integers"),
			infer("fractional id 1.5 (JSON)", "", func(_ *testing.T, id string) []byte {
				return fmt.Appendf(nil, `{"id":%q,"input_ids":[101,1.5,102]}`, id)
			}, schemas.CodeBadRequest, "array of integers"),
			infer("huge array (200 000 ids)", "", body(map[string]any{"input_ids": make([]int32, 200_000)}), schemas.CodeWrongLength, "exactly 128"),
			infer("deadline in the past", "", body(map[string]any{"a": "x", "deadline": time.Now().Add(-time.Minute)}), schemas.CodeDeadline, "deadline"),
			notInbox("reply header aimed at the JetStream API (direct publish)", "$JS.API.STREAM.PURGE."+schemas.InferStream, false),
			notInbox("reply header aimed at the compile work subject (direct publish)", schemas.CompileWorkSubject, false),
		),
		// Odd but valid: served normally.
		stopAt("worker",
			infer("text of 900 KB (truncated by the tokenizer)", "", body(map[string]any{"a": big, "b": "a short second sentence"}), "", ""),
			infer("msgpack nil deadline (crashed the worker before)", schemas.ContentTypeMsgpack, mbody(map[string]any{"a": "x", "deadline": nil}), "", ""),
			infer("msgpack nil field, no id (the intake's id stamping corrupted it before)", schemas.ContentTypeMsgpack,
				raw(mp(t, map[string]any{"b": nil, "a": "x", "model": nil})), "", ""),
		),
		// Compile jobs without a usable name or source: refused at the
		// intake, which decodes every job.
		stopAt("intake",
			compileJob("compile job with a missing source", schemas.CompileJob{Name: "m1", Batch: 4, Seq: 128}, schemas.CodeBadCompileJob, "source"),
			compileJob("compile job with a bad model name", schemas.CompileJob{Name: "a b", Source: "checkpoint:tiny", Batch: 4, Seq: 128}, schemas.CodeBadCompileJob, "name"),
		),
		// Compile jobs that only the compile worker can judge (precisions,
		// limits, checkpoints, where its result may go).
		stopAt("compile worker",
			compileJob("compile job for a checkpoint never uploaded", schemas.CompileJob{Name: "m2", Source: "checkpoint:nosuch", Batch: 4, Seq: 128}, schemas.CodeBadCompileJob, "upload"),
			compileJob("compile job for a corrupt checkpoint", schemas.CompileJob{Name: "m3", Source: "checkpoint:corrupt", Batch: 4, Seq: 128, Precision: "fp32"}, schemas.CodeCompileFailed, "checkpoint:corrupt"),
			compileJob("compile job with an unknown precision", schemas.CompileJob{Name: "m4", Source: "checkpoint:tiny", Batch: 4, Seq: 128, Precision: "fp8"}, schemas.CodeBadCompileJob, "fp8"),
			compileJob("compile job with batch 0", schemas.CompileJob{Name: "m5", Source: "checkpoint:tiny", Batch: 0, Seq: 128}, schemas.CodeBadCompileJob, "batch 0"),
			compileJob("compile job with batch 10000", schemas.CompileJob{Name: "m6", Source: "checkpoint:tiny", Batch: 10000, Seq: 128}, schemas.CodeBadCompileJob, "batch 10000"),
			compileJob("compile job with seq 0", schemas.CompileJob{Name: "m7", Source: "checkpoint:tiny", Batch: 4, Seq: 0}, schemas.CodeBadCompileJob, "seq 0"),
			compileJob("compile job with seq 100000", schemas.CompileJob{Name: "m8", Source: "checkpoint:tiny", Batch: 4, Seq: 100000}, schemas.CodeBadCompileJob, "seq 100000"),
			compileJob("compile job with an unknown GELU", schemas.CompileJob{Name: "m9", Source: "checkpoint:tiny", Batch: 4, Seq: 128, GELU: "relu"}, schemas.CodeBadCompileJob, "gelu"),
			class{name: "compile job whose reply header is not an inbox", run: func(t *testing.T, h *harness) (string, string) {
				target := "$JS.API.STREAM.DELETE.OBJ_" + schemas.ModelBucket
				sub, err := h.nc.SubscribeSync(target)
				if err != nil {
					t.Fatal(err)
				}
				defer sub.Unsubscribe()
				before := h.consumerInfo(t, schemas.CompileStream, schemas.CompilerDurable)
				id := h.id("job")
				h.direct(t, schemas.CompileWorkSubject, nats.Header{schemas.HeaderReplyTo: {target}, schemas.HeaderMsgID: {id}},
					fmt.Appendf(nil, `{"id":%q,"name":"m10","source":"checkpoint:tiny","batch":4,"seq":128}`, id))
				deadline := time.Now().Add(10 * time.Second)
				for h.consumerInfo(t, schemas.CompileStream, schemas.CompilerDurable).Delivered.Consumer == before.Delivered.Consumer && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				after := h.settled(t, schemas.CompileStream, schemas.CompilerDurable)
				if after.NumRedelivered != before.NumRedelivered {
					t.Fatal("the job was redelivered")
				}
				silent(t, sub, 200*time.Millisecond)
				if after.Delivered.Consumer == before.Delivered.Consumer {
					t.Fatal("the compile worker never received the job")
				}
				return "compile worker", "refused, no reply"
			}},
		),
		// Damaged artifacts in the model bucket.
		stopAt("FetchArtifact",
			artifactClass("truncated artifact in the object store", func(b []byte) []byte { return b[:len(b)/2] }, "not a usable artifact"),
			artifactClass("tampered artifact in the object store (one byte)", func(b []byte) []byte { b[len(b)/2] ^= 0x40; return b }, "not a usable artifact"),
		),
	)
}

// putCorruptCheckpoint stores checkpoint "corrupt": a real config.json and
// a model.safetensors of garbage; and uploads the real tiny checkpoint.
func putCheckpoints(t *testing.T, h *harness) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := fixtures.ModelDir(t, "tiny-fp32")
	if _, err := compiler.Upload(ctx, h.js, "tiny", dir); err != nil {
		t.Fatal(err)
	}
	obs, err := h.js.ObjectStore(ctx, schemas.CheckpointBucket)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, compiler.CheckpointObject("corrupt", "config.json"), cfg); err != nil {
		t.Fatal(err)
	}
	garbage := append([]byte{0x10, 0, 0, 0, 0, 0, 0, 0}, []byte(`{"x":{"dtype":"F32","shape":[4],"data_offsets":[0,99]}}`)...)
	if _, err := obs.PutBytes(ctx, compiler.CheckpointObject("corrupt", "model.safetensors"), garbage); err != nil {
		t.Fatal(err)
	}
}

func TestBadInput(t *testing.T) {
	h := newHarness(t)
	putCheckpoints(t, h)
	h.valid(t)
	cls := classes(t)
	type row struct{ name, at, code, result string }
	rows := make([]row, 0, len(cls))
	passed := 0
	for _, c := range cls {
		var at, code string
		ok := t.Run(c.name, func(t *testing.T) {
			inferBefore := h.consumerInfo(t, schemas.InferStream, schemas.WorkerDurable(model))
			compileBefore := h.consumerInfo(t, schemas.CompileStream, schemas.CompilerDurable)
			at, code = c.run(t, h)
			if at != c.want {
				t.Errorf("stopped at %q, want %q", at, c.want)
			}
			// Terminated, not redelivered; the services stay up and serve
			// the next request.
			inferAfter := h.settled(t, schemas.InferStream, schemas.WorkerDurable(model))
			compileAfter := h.settled(t, schemas.CompileStream, schemas.CompilerDurable)
			if inferAfter.NumRedelivered != inferBefore.NumRedelivered || compileAfter.NumRedelivered != compileBefore.NumRedelivered {
				t.Fatalf("redeliveries: infer %d → %d, compile %d → %d", inferBefore.NumRedelivered, inferAfter.NumRedelivered,
					compileBefore.NumRedelivered, compileAfter.NumRedelivered)
			}
			h.workerUp(t)
			h.valid(t)
		})
		result := "FAIL"
		if ok {
			result, passed = "ok", passed+1
		}
		rows = append(rows, row{c.name, at, code, result})
	}
	// A valid compile job still succeeds after all the bad ones.
	t.Run("valid compile job after the bad ones", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		res, err := compiler.Submit(ctx, h.nc, schemas.CompileJob{Name: "tiny-again", Source: "checkpoint:tiny", Batch: 1, Seq: 16, Precision: "fp32"},
			compiler.WithSubmitTimeout(60*time.Second))
		if err != nil || len(res.Digest) != 64 {
			t.Fatalf("%+v %v", res, err)
		}
		obs, err := h.js.ObjectStore(ctx, schemas.ModelBucket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := obs.GetInfo(ctx, "tiny-again"); err != nil {
			t.Fatal(err)
		}
		var names []string
		lister, err := obs.List(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
			t.Fatal(err)
		}
		for _, o := range lister {
			names = append(names, o.Name)
		}
		for _, n := range names {
			if strings.HasPrefix(n, "m") && len(n) <= 3 {
				t.Errorf("a refused compile job stored model %q", n)
			}
		}
	})

	var sb strings.Builder
	fmt.Fprintf(&sb, "\n%-4s %-74s %-26s %-20s %s\n", "#", "class", "stopped at", "code", "result")
	for i, r := range rows {
		fmt.Fprintf(&sb, "%-4d %-74s %-26s %-20s %s\n", i+1, r.name, r.at, r.code, r.result)
	}
	t.Log(sb.String())
	t.Logf("BADINPUT classes=%d passed=%d", len(rows), passed)
	if passed != len(rows) {
		t.Errorf("%d of %d bad-input classes failed", len(rows)-passed, len(rows))
	}
}
