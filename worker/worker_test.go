package worker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/testbuf"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/tokenizer"
	"github.com/bertq/bertq/worker"
)

// expectFake is what the fake engine gives for a text pair at seq.
func expectFake(t *testing.T, a, b string, seq int) [2]float32 {
	t.Helper()
	enc, err := tokenizer.Default().EncodePair(a, b, seq)
	if err != nil {
		t.Fatal(err)
	}
	l0, l1 := fakeLogits(enc.InputIDs, enc.TokenTypeIDs, enc.AttentionMask)
	return [2]float32{l0, l1}
}

func TestWorkerAnswersViaIntake(t *testing.T) {
	e := newEnv(t, true)
	e.putModel(t, "fake", []byte("x"))
	f := newFake(4, 32)
	startWorker(t, e, f, fakeInfo("fake"))

	resp, err := e.nc.Request(schemas.InferSubject("fake"), jsonReq("r1", "The cat sat on the mat.", "A cat was sitting on a mat."), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	r := decodeReply(t, resp).r
	want := expectFake(t, "The cat sat on the mat.", "A cat was sitting on a mat.", 32)
	if r.Error != nil || r.ID != "r1" || r.Model != "fake" || r.Worker != "test-worker" || r.BatchSize != 1 || r.V != schemas.Version {
		t.Fatalf("reply %+v", r)
	}
	if len(r.Logits) != 2 || r.Logits[0] != want[0] || r.Logits[1] != want[1] {
		t.Errorf("logits %v, want %v", r.Logits, want)
	}
	idx := 0
	if want[1] > want[0] {
		idx = 1
	}
	wantMsg := map[int]string{0: "not paraphrase", 1: "paraphrase"}[idx]
	if r.LabelIndex != idx || r.Label != []string{"not_equivalent", "equivalent"}[idx] || r.Message != wantMsg {
		t.Errorf("label %d %q %q", r.LabelIndex, r.Label, r.Message)
	}
	if len(r.Probabilities) != 2 || math.Abs(float64(r.Probabilities[0]+r.Probabilities[1])-1) > 1e-6 {
		t.Errorf("probabilities %v", r.Probabilities)
	}
	if r.QueueMS < 0 || r.ComputeMS < 0 || r.Synthetic {
		t.Errorf("timings %v %v synthetic %v", r.QueueMS, r.ComputeMS, r.Synthetic)
	}
	if resp.Header.Get(schemas.HeaderContentType) != schemas.ContentTypeJSON || resp.Header.Get(schemas.HeaderErrorCode) != "" {
		t.Errorf("headers %v", resp.Header)
	}
	e.consumerIdle(t, "fake")
}

// TestWorkerBacklogBatches: requests queued while no worker runs are all
// answered once one starts, in batches of at most 4; with --pad static every
// batch is the seed's static shape, dummy rows filling the short ones, and
// packed (the default) no batch has a dummy row or a padding token.
func TestWorkerBacklogBatches(t *testing.T) {
	for _, pad := range []worker.Pad{worker.PadStatic, worker.PadNone} {
		t.Run(string(pad), func(t *testing.T) {
			e := newEnv(t, false)
			f := newFake(4, 32)
			inbox := nats.NewInbox()
			sub, err := e.nc.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			tokens := 0
			for i := 0; i < 10; i++ {
				a := fmt.Sprintf("sentence number %d", i)
				e.publishDirect(t, "fake", fmt.Sprintf("b%d", i), inbox, "", jsonReq(fmt.Sprintf("b%d", i), a, "other"))
				tokens += realTokens(t, a, "other", 32)
			}
			rw := startWorker(t, e, f, fakeInfo("fake"), worker.WithParallel(1), worker.WithPad(pad))
			msgs := collect(t, sub, 10, 10*time.Second)
			seen := map[string]bool{}
			for _, m := range msgs {
				r := decodeReply(t, m).r
				if r.Error != nil || r.BatchSize < 1 || r.BatchSize > 4 || r.BatchTokens < r.BatchSize {
					t.Fatalf("reply %+v", r)
				}
				var i int
				fmt.Sscanf(r.ID, "b%d", &i)
				want := expectFake(t, fmt.Sprintf("sentence number %d", i), "other", 32)
				if r.Logits[0] != want[0] || r.Logits[1] != want[1] {
					t.Errorf("%s: logits %v, want %v", r.ID, r.Logits, want)
				}
				seen[r.ID] = true
			}
			if len(seen) != 10 {
				t.Errorf("answered %d distinct ids", len(seen))
			}
			e.consumerIdle(t, "fake")
			log, real, dummies := f.log(), 0, 0
			for _, b := range log {
				real += b.real
				dummies += b.dummy
				switch {
				case b.real < 1 || b.real > 4:
					t.Errorf("a batch of %d requests", b.real)
				case pad == worker.PadStatic && (b.packed || b.real+b.dummy != 4 || b.rows != 4*32):
					t.Errorf("--pad static ran %+v, want the static 4 × 32 shape filled with dummy rows", b)
				case pad == worker.PadNone && (!b.packed || b.dummy != 0 || b.masked):
					t.Errorf("packed ran %+v, want packed real rows only", b)
				}
			}
			s := rw.w.Stats()
			wantPadded, wantRows := uint64(4*len(log)-10), uint64(4*32*len(log))
			if pad == worker.PadNone {
				wantPadded, wantRows = 0, uint64(tokens)
			}
			if real != 10 || s.Answered != 10 || s.Batches != uint64(len(log)) || s.RealSlots != 10 ||
				s.PaddedSlots != wantPadded || uint64(dummies) != wantPadded || s.Tokens != uint64(tokens) || s.Rows != wantRows {
				t.Errorf("engine ran %+v; stats %+v; want %d padded slots, %d tokens, %d rows", log, s, wantPadded, tokens, wantRows)
			}
		})
	}
}

// realTokens is the WordPiece length of a pair with its special tokens.
func realTokens(t *testing.T, a, b string, seq int) int {
	t.Helper()
	enc, err := tokenizer.Default().EncodePair(a, b, seq)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range enc.AttentionMask {
		n += int(m)
	}
	return n
}

// TestWorkerBurstParallel: 4 loops and a burst through the intake; every
// reply equals a direct run of its own input (no slot mix-up), batches hold
// at most 4 real requests and padding is never counted.
func TestWorkerBurstParallel(t *testing.T) {
	e := newEnv(t, true)
	e.putModel(t, "fake", []byte("x"))
	f := newFake(4, 32)
	rw := startWorker(t, e, f, fakeInfo("fake"), worker.WithParallel(4))
	const n = 48
	type result struct {
		i int
		r schemas.InferReply
		e error
	}
	results := make(chan result, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := e.nc.Request(schemas.InferSubject("fake"), jsonReq(fmt.Sprintf("p%d", i), fmt.Sprintf("burst sentence %d about cats", i), fmt.Sprintf("and dogs %d", i*7)), 20*time.Second)
			if err != nil {
				results <- result{i: i, e: err}
				return
			}
			var r schemas.InferReply
			err = json.Unmarshal(resp.Data, &r)
			results <- result{i, r, err}
		}()
	}
	wg.Wait()
	close(results)
	for res := range results {
		if res.e != nil {
			t.Fatalf("request %d: %v", res.i, res.e)
		}
		r := res.r
		want := expectFake(t, fmt.Sprintf("burst sentence %d about cats", res.i), fmt.Sprintf("and dogs %d", res.i*7), 32)
		if r.Error != nil || r.ID != fmt.Sprintf("p%d", res.i) || r.Logits[0] != want[0] || r.Logits[1] != want[1] {
			t.Errorf("request %d: reply %+v, want logits %v", res.i, r, want)
		}
		if r.BatchSize < 1 || r.BatchSize > 4 {
			t.Errorf("batch size %d", r.BatchSize)
		}
	}
	total := 0
	for _, b := range f.log() {
		if b.real < 1 || b.real > 4 || b.dummy != 0 || !b.packed {
			t.Errorf("a batch ran %+v", b)
		}
		total += b.real
	}
	s := rw.w.Stats()
	if total != n || s.Answered != n || s.RealSlots != n || s.PaddedSlots != 0 || s.Rows != s.Tokens {
		t.Errorf("engine saw %d real rows; stats %+v", total, s)
	}
	e.consumerIdle(t, "fake")
}

func TestWorkerBadInputs(t *testing.T) {
	e := newEnv(t, false)
	f := newFake(4, 16)
	rw := startWorker(t, e, f, fakeInfo("fake"))
	ids := func(n int, v int32) []int32 {
		s := make([]int32, n)
		for i := range s {
			s[i] = v
		}
		return s
	}
	js := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mp := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ok16 := ids(16, 1000)
	zeros := ids(16, 0)
	maskBad := ids(16, 1)
	maskBad[3] = 2
	types2 := ids(16, 0)
	types2[5] = 2
	oov := ids(16, 1000)
	oov[7] = 30522
	neg := ids(16, 1000)
	neg[0] = -1
	cases := []struct {
		name, id, ct string
		body         []byte
		code         string
	}{
		{"not json", "", "", []byte("this is not json"), schemas.CodeBadEncoding},
		{"json array", "", "", []byte(`["a","b"]`), schemas.CodeBadEncoding},
		{"truncated json", "", "", []byte(`{"id":"x","a":"b`), schemas.CodeBadEncoding},
		{"msgpack garbage", "", schemas.ContentTypeMsgpack, []byte{0xc1}, schemas.CodeBadEncoding},
		{"wrong type a", "wt1", "", []byte(`{"id":"wt1","a":5}`), schemas.CodeBadRequest},
		{"wrong type ids", "wt2", "", []byte(`{"id":"wt2","input_ids":"abc"}`), schemas.CodeBadRequest},
		{"fractional id", "wt3", "", []byte(`{"id":"wt3","input_ids":[1.5]}`), schemas.CodeBadRequest},
		{"missing text", "m1", "", []byte(`{"id":"m1"}`), schemas.CodeMissingField},
		{"types without ids", "m2", "", js(map[string]any{"id": "m2", "token_type_ids": zeros}), schemas.CodeMissingField},
		{"invalid utf8 json", "u1", "", []byte("{\"id\":\"u1\",\"a\":\"ab\xff\xfe\"}"), schemas.CodeInvalidUTF8},
		{"lone surrogate", "u2", "", []byte(`{"id":"u2","a":"x\ud800y"}`), schemas.CodeInvalidUTF8},
		{"invalid utf8 msgpack", "u3", schemas.ContentTypeMsgpack, mp(map[string]any{"id": "u3", "a": "ok", "b": string([]byte{0xc3, 0x28})}), schemas.CodeInvalidUTF8},
		{"id out of vocab", "r1", "", js(map[string]any{"id": "r1", "input_ids": oov}), schemas.CodeOutOfRange},
		{"negative id", "r2", "", js(map[string]any{"id": "r2", "input_ids": neg}), schemas.CodeOutOfRange},
		{"type outside type vocab", "r3", "", js(map[string]any{"id": "r3", "input_ids": ok16, "token_type_ids": types2}), schemas.CodeOutOfRange},
		{"mask value 2", "r4", "", js(map[string]any{"id": "r4", "input_ids": ok16, "attention_mask": maskBad}), schemas.CodeOutOfRange},
		{"wrong length", "l1", "", js(map[string]any{"id": "l1", "input_ids": ids(5, 1000)}), schemas.CodeWrongLength},
		{"types length", "l2", "", js(map[string]any{"id": "l2", "input_ids": ok16, "token_type_ids": ids(15, 0)}), schemas.CodeWrongLength},
		{"mask length", "l3", "", js(map[string]any{"id": "l3", "input_ids": ok16, "attention_mask": ids(17, 1)}), schemas.CodeWrongLength},
		{"mask all zeros", "z1", "", js(map[string]any{"id": "z1", "input_ids": ok16, "attention_mask": zeros}), schemas.CodeBadRequest},
		{"text and ids", "x1", "", js(map[string]any{"id": "x1", "a": "hi", "input_ids": ok16}), schemas.CodeBadRequest},
		{"future version", "v1", "", []byte(`{"v":99,"id":"v1","a":"x"}`), schemas.CodeBadRequest},
		{"deadline passed", "d1", "", js(map[string]any{"id": "d1", "a": "x", "deadline": time.Now().Add(-time.Second)}), schemas.CodeDeadline},
	}
	inbox := nats.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e.publishDirect(t, "fake", fmt.Sprintf("msg-%d", i), inbox, tc.ct, tc.body)
			m, err := sub.NextMsg(10 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			r := decodeReply(t, m).r
			if r.Error == nil || r.Error.Code != tc.code || r.Error.Message == "" {
				t.Fatalf("reply %+v, want %s", r, tc.code)
			}
			if m.Header.Get(schemas.HeaderErrorCode) != tc.code {
				t.Errorf("Bertq-Error %q", m.Header.Get(schemas.HeaderErrorCode))
			}
			wantID := tc.id
			if wantID == "" {
				wantID = fmt.Sprintf("msg-%d", i) // falls back to Nats-Msg-Id
			}
			if r.ID != wantID {
				t.Errorf("id %q, want %q", r.ID, wantID)
			}
			if tc.ct == schemas.ContentTypeMsgpack && m.Header.Get(schemas.HeaderContentType) != schemas.ContentTypeMsgpack {
				t.Errorf("msgpack request answered in %q", m.Header.Get(schemas.HeaderContentType))
			}
		})
	}
	// Still serving: a valid request right after, text then pre-tokenized.
	e.publishDirect(t, "fake", "good", inbox, "", jsonReq("good", "still there?", ""))
	mask := ids(16, 0)
	mask[0], mask[1], mask[2] = 1, 1, 1
	e.publishDirect(t, "fake", "good2", inbox, "", js(map[string]any{"id": "good2", "input_ids": ok16, "attention_mask": mask}))
	for _, m := range collect(t, sub, 2, 10*time.Second) {
		if r := decodeReply(t, m).r; r.Error != nil || len(r.Logits) != 2 {
			t.Fatalf("valid request after the bad ones: %+v", r)
		}
	}
	if f.calls.Load() > 2 {
		t.Errorf("the engine ran %d times; bad requests must not reach it", f.calls.Load())
	}
	s := rw.w.Stats()
	bad := uint64(0)
	for _, v := range s.Errors {
		bad += v
	}
	if bad != uint64(len(cases)) || s.Answered != 2 {
		t.Errorf("stats %+v", s)
	}
	e.consumerIdle(t, "fake")
}

func TestWorkerDeadlineWithoutCompute(t *testing.T) {
	e := newEnv(t, true)
	e.putModel(t, "fake", []byte("x"))
	f := newFake(4, 16)
	rw := startWorker(t, e, f, fakeInfo("fake"))
	body, _ := json.Marshal(map[string]any{"id": "late", "a": "x", "deadline": time.Now().Add(-time.Millisecond).Format(time.RFC3339Nano)})
	resp, err := e.nc.Request(schemas.InferSubject("fake"), body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeReply(t, resp).r; r.Error == nil || r.Error.Code != schemas.CodeDeadline || r.ID != "late" {
		t.Fatalf("reply %+v", r)
	}
	if f.calls.Load() != 0 || rw.w.Stats().Batches != 0 {
		t.Errorf("the engine ran %d times", f.calls.Load())
	}
	// A deadline in the future is fine.
	body, _ = json.Marshal(map[string]any{"id": "soon", "a": "x", "deadline": time.Now().Add(time.Minute)})
	resp, err = e.nc.Request(schemas.InferSubject("fake"), body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeReply(t, resp).r; r.Error != nil {
		t.Fatalf("reply %+v", r)
	}
	e.consumerIdle(t, "fake")
}

// TestWorkerDrain: cancelling mid-backlog finishes the batches in hand, acks
// them, and leaves the rest pending: nothing unacked.
func TestWorkerDrain(t *testing.T) {
	e := newEnv(t, false)
	f := newFake(4, 16)
	f.delay = 100 * time.Millisecond
	inbox := nats.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	const n = 40
	for i := 0; i < n; i++ {
		e.publishDirect(t, "fake", fmt.Sprintf("d%d", i), inbox, "", jsonReq(fmt.Sprintf("d%d", i), "drain me", ""))
	}
	rw := startWorker(t, e, f, fakeInfo("fake"), worker.WithParallel(2))
	collect(t, sub, 4, 10*time.Second)
	rw.stop(t)
	answered := rw.w.Stats().Answered
	// Replies for everything answered arrive; nothing more does.
	got := 4
	for {
		if _, err := sub.NextMsg(300 * time.Millisecond); err != nil {
			break
		}
		got++
	}
	if uint64(got) != answered || answered >= n {
		t.Errorf("%d replies, %d answered of %d", got, answered, n)
	}
	c, err := e.js.Consumer(context.Background(), schemas.InferStream, schemas.WorkerDurable("fake"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != uint64(n)-answered {
		t.Errorf("after drain: %d unacked, %d pending, %d answered", info.NumAckPending, info.NumPending, answered)
	}
	// The rest is served by the next worker.
	startWorker(t, e, f, fakeInfo("fake"), worker.WithParallel(2))
	collect(t, sub, n-got, 20*time.Second)
	e.consumerIdle(t, "fake")
}

func TestWorkerMsgpackClient(t *testing.T) {
	e := newEnv(t, true)
	e.putModel(t, "fake", []byte("x"))
	startWorker(t, e, newFake(4, 32), fakeInfo("fake"))
	body, err := msgpack.Marshal(&schemas.InferRequest{ID: "mp1", A: "msgpack speaks", B: "binary"})
	if err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg(schemas.InferSubject("fake"))
	m.Data = body
	m.Header.Set(schemas.HeaderContentType, schemas.ContentTypeMsgpack)
	resp, err := e.nc.RequestMsg(m, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get(schemas.HeaderContentType) != schemas.ContentTypeMsgpack {
		t.Fatalf("reply content type %q", resp.Header.Get(schemas.HeaderContentType))
	}
	var r schemas.InferReply
	if err := msgpack.Unmarshal(resp.Data, &r); err != nil {
		t.Fatal(err)
	}
	want := expectFake(t, "msgpack speaks", "binary", 32)
	if r.Error != nil || r.ID != "mp1" || r.Logits[0] != want[0] || r.Logits[1] != want[1] {
		t.Fatalf("reply %+v", r)
	}
	// A msgpack request without an id is given one by the intake (sniffed,
	// no Content-Type), and the reply carries it.
	body, _ = msgpack.Marshal(map[string]any{"a": "no id here"})
	resp, err = e.nc.Request(schemas.InferSubject("fake"), body, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r2 schemas.InferReply
	if err := msgpack.Unmarshal(resp.Data, &r2); err != nil {
		t.Fatal(err)
	}
	if r2.Error != nil || r2.ID == "" {
		t.Fatalf("reply %+v", r2)
	}
}

// TestWorkerJetStreamClient: a client publishing straight to the work subject
// gets a PubAck, then its reply on the inbox named in Bertq-Reply-To.
func TestWorkerJetStreamClient(t *testing.T) {
	e := newEnv(t, false)
	rw := startWorker(t, e, newFake(4, 32), fakeInfo("fake"))
	inbox := nats.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	ack := e.publishDirect(t, "fake", "js1", inbox, schemas.ContentTypeJSON, jsonReq("js1", "direct to the stream", ""))
	if ack.Stream != schemas.InferStream || ack.Duplicate {
		t.Fatalf("PubAck %+v", ack)
	}
	again := e.publishDirect(t, "fake", "js1", inbox, schemas.ContentTypeJSON, jsonReq("js1", "direct to the stream", ""))
	if !again.Duplicate {
		t.Errorf("same Nats-Msg-Id not de-duplicated: %+v", again)
	}
	r := decodeReply(t, collect(t, sub, 1, 10*time.Second)[0]).r
	if r.Error != nil || r.ID != "js1" || r.BatchSize != 1 || r.QueueMS < 0 {
		t.Fatalf("reply %+v", r)
	}
	// No reply subject: processed and acked all the same.
	e.publishDirect(t, "fake", "", "", "", jsonReq("silent", "nobody listens", ""))
	e.consumerIdle(t, "fake")
	deadline := time.Now().Add(5 * time.Second)
	for rw.w.Stats().Answered != 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := rw.w.Stats().Answered; got != 2 {
		t.Errorf("answered %d", got)
	}
}

// TestWorkerDeadLetter: an engine that keeps failing gets each request
// retried up to MaxDeliver, then dead-lettered with its headers and answered.
func TestWorkerDeadLetter(t *testing.T) {
	e := newEnv(t, false)
	f := newFake(4, 16)
	f.failN.Store(1000)
	rw := startWorker(t, e, f, fakeInfo("fake"), worker.WithMaxDeliver(2), worker.WithRetryDelay(20*time.Millisecond))
	inbox := nats.NewInbox()
	sub, _ := e.nc.SubscribeSync(inbox)
	e.publishDirect(t, "fake", "dl1", inbox, "", jsonReq("dl1", "doomed", ""))
	m := collect(t, sub, 1, 10*time.Second)[0]
	r := decodeReply(t, m).r
	if r.Error == nil || r.Error.Code != schemas.CodeInternal || !strings.Contains(r.Error.Message, schemas.DeadStream) {
		t.Fatalf("reply %+v", r)
	}
	if f.calls.Load() != 2 {
		t.Errorf("engine ran %d times, want MaxDeliver=2", f.calls.Load())
	}
	ds, err := e.js.Stream(context.Background(), schemas.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := ds.GetLastMsgForSubject(context.Background(), schemas.DeadSubject("fake"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(dead.Data, jsonReq("dl1", "doomed", "")) || dead.Header.Get(schemas.HeaderReplyTo) != inbox || dead.Header.Get(schemas.HeaderMsgID) != "dl1" ||
		!strings.Contains(dead.Header.Get(schemas.HeaderDeadReason), "fake engine failure") {
		t.Errorf("dead letter %s %v", dead.Data, dead.Header)
	}
	if s := rw.w.Stats(); s.DeadLetters != 1 || s.Retries != 1 || s.FailedBatch != 2 {
		t.Errorf("stats %+v", s)
	}
	e.consumerIdle(t, "fake")
}

// TestWorkerEnginePanic: a panicking engine costs a retry, not the worker.
func TestWorkerEnginePanic(t *testing.T) {
	e := newEnv(t, true)
	e.putModel(t, "fake", []byte("x"))
	f := newFake(4, 16)
	f.panicN.Store(1)
	rw := startWorker(t, e, f, fakeInfo("fake"), worker.WithRetryDelay(20*time.Millisecond))
	resp, err := e.nc.Request(schemas.InferSubject("fake"), jsonReq("pan", "survive", ""), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r := decodeReply(t, resp).r; r.Error != nil {
		t.Fatalf("reply %+v", r)
	}
	// The answer came from a second run: the panicking batch was handed
	// back and redelivered, not answered with whatever its logits held.
	if n := f.calls.Load(); n != 2 {
		t.Errorf("engine ran %d times, want 2 (the panic, then the retry)", n)
	}
	if got := f.realBatches(); !slices.Equal(got, []int{1}) {
		t.Errorf("completed batches %v, want [1]", got)
	}
	if s := rw.w.Stats(); s.FailedBatch != 1 || s.Retries != 1 || s.DeadLetters != 0 {
		t.Errorf("stats: %d failed batches, %d retries, %d dead letters; want 1, 1, 0", s.FailedBatch, s.Retries, s.DeadLetters)
	}
	e.consumerIdle(t, "fake")
}

func TestWorkerMetricsAndService(t *testing.T) {
	e := newEnv(t, true)
	e.putModel(t, "fake", []byte("x"))
	rw := startWorker(t, e, newFake(4, 16), fakeInfo("fake"), worker.WithStatsInterval(50*time.Millisecond))
	if _, err := e.nc.Request(schemas.InferSubject("fake"), jsonReq("m1", "count me", ""), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := e.nc.Request(schemas.InferSubject("fake"), []byte(`{"id":"m2"}`), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(rw.w.MetricsHandler())
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(body)
	for _, want := range []string{
		`bertq_worker_requests_total{model="fake",worker="test-worker",code="ok"} 1`,
		`bertq_worker_requests_total{model="fake",worker="test-worker",code="missing_field"} 1`,
		`bertq_worker_batches_total{model="fake",worker="test-worker"} 1`,
		`bertq_worker_padded_slots_total{model="fake",worker="test-worker"} 0`,
		fmt.Sprintf(`bertq_worker_tokens_total{model="fake",worker="test-worker"} %d`, realTokens(t, "count me", "", 16)),
		fmt.Sprintf(`bertq_worker_rows_total{model="fake",worker="test-worker"} %d`, realTokens(t, "count me", "", 16)),
		`pad="none",max_batch="4",max_tokens="64"} 1`,
		`bertq_worker_compute_ms_count{model="fake",worker="test-worker"} 1`,
		`bertq_worker_compute_ms_bucket{model="fake",worker="test-worker",le="+Inf"} 1`,
		"# TYPE bertq_worker_compute_ms histogram",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q:\n%s", want, text)
		}
	}
	// micro STATS carries the worker's counters.
	subj, err := micro.ControlSubject(micro.StatsVerb, schemas.WorkerService, "")
	if err != nil {
		t.Fatal(err)
	}
	m, err := e.nc.Request(subj, nil, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var st micro.Stats
	if err := json.Unmarshal(m.Data, &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Endpoints) != 1 {
		t.Fatalf("stats %s", m.Data)
	}
	var ws worker.Stats
	if err := json.Unmarshal(st.Endpoints[0].Data, &ws); err != nil {
		t.Fatal(err)
	}
	if ws.Model != "fake" || ws.Answered != 1 || ws.Errors[schemas.CodeMissingField] != 1 {
		t.Errorf("worker stats %+v", ws)
	}
	// The queue depth poll runs with the throughput log.
	deadline := time.Now().Add(5 * time.Second)
	for rw.w.Stats().QueueDepth != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if d := rw.w.Stats().QueueDepth; d != 0 {
		t.Errorf("queue depth %d", d)
	}
}

func TestInfoFromArtifactAndFetch(t *testing.T) {
	dir := t.TempDir()
	path := vocabArtifact(t, dir, true)
	f, err := artifact.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	info, err := worker.InfoFromArtifact("tiny", f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if info.Name != "tiny" || !info.Synthetic || info.VocabSize != 30522 || info.TypeVocabSize != 2 ||
		fmt.Sprint(info.Labels) != "[no yes]" || info.Tokenizer.VocabSize() != 30522 || !info.Tokenizer.Lowercase() {
		t.Errorf("info %+v", info)
	}

	e := newEnv(t, false)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e.putModel(t, "tiny", good)
	cache := filepath.Join(dir, "cache")
	ctx := context.Background()
	got, err := worker.FetchArtifact(ctx, e.js, "tiny", cache)
	if err != nil {
		t.Fatal(err)
	}
	if got.Digest == "" || !strings.HasSuffix(got.Path, ".bqa") || filepath.Dir(got.Path) != cache {
		t.Errorf("fetched %s", got.Path)
	}
	got.Close()
	again, err := worker.FetchArtifact(ctx, e.js, "tiny", cache)
	if err != nil {
		t.Fatal(err)
	}
	again.Close()
	entries, _ := os.ReadDir(cache)
	if len(entries) != 1 {
		t.Errorf("cache holds %d entries, want 1", len(entries))
	}

	// Tampered: one byte flipped in the middle; truncated: the tail cut off.
	bad := bytes.Clone(good)
	bad[len(bad)/2] ^= 0xff
	e.putModel(t, "tampered", bad)
	if _, err := worker.FetchArtifact(ctx, e.js, "tampered", cache); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("tampered artifact: %v", err)
	}
	e.putModel(t, "truncated", good[:len(good)-100])
	if _, err := worker.FetchArtifact(ctx, e.js, "truncated", cache); err == nil {
		t.Error("truncated artifact accepted")
	}
	if _, err := worker.FetchArtifact(ctx, e.js, "absent", cache); err == nil || !strings.Contains(err.Error(), "no model") {
		t.Errorf("absent model: %v", err)
	}
	// A damaged cache entry is fetched again.
	if err := os.WriteFile(filepath.Join(cache, entries[0].Name()), []byte("junk"), 0o600); err != nil {
		t.Fatal(err)
	}
	fixed, err := worker.FetchArtifact(ctx, e.js, "tiny", cache)
	if err != nil {
		t.Fatal(err)
	}
	fixed.Close()
}

func TestNewRejectsBadConfig(t *testing.T) {
	e := newEnv(t, false)
	f := newFake(4, 16)
	if _, err := worker.New(e.nc, f); err == nil {
		t.Error("New without WithInfo accepted")
	}
	bad := fakeInfo("no spaces allowed")
	if _, err := worker.New(e.nc, f, worker.WithInfo(bad)); err == nil {
		t.Error("bad model name accepted")
	}
	if _, err := worker.New(e.nc, f, worker.WithInfo(fakeInfo("ok")), worker.WithParallel(0)); err == nil {
		t.Error("parallel 0 accepted")
	}
	// Run fails clearly when the broker was never provisioned.
	b2 := newUnprovisioned(t)
	w, err := worker.New(b2, f, worker.WithInfo(fakeInfo("ok")))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "provision") {
		t.Errorf("Run on an unprovisioned server: %v", err)
	}
}

func newUnprovisioned(t *testing.T) *nats.Conn {
	t.Helper()
	b, err := broker.Start(broker.WithListen("127.0.0.1:-1"), broker.WithStoreDir(t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(); b.WaitForShutdown() })
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestWorkerPackedBurst: a burst of short requests against an artifact
// compiled for batch 16 runs in packed batches larger than 4, never more than
// --batch sequences or --max-tokens tokens, with no dummy row and no padding
// token; every reply equals the fake engine's answer for its own input.
func TestWorkerPackedBurst(t *testing.T) {
	cases := []struct {
		name   string
		limits engine.Limits
		min    int // the largest batch must exceed this
	}{
		{"artifact's batch", engine.Limits{}, 4},
		{"--batch 8", engine.Limits{Seqs: 8}, 4},
		{"--max-tokens 64", engine.Limits{Tokens: 64}, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, false)
			f := newFake(16, 32)
			f.delay = 20 * time.Millisecond // the burst queues up behind each batch
			inbox := nats.NewInbox()
			sub, err := e.nc.SubscribeSync(inbox)
			if err != nil {
				t.Fatal(err)
			}
			const n = 60
			for i := 0; i < n; i++ {
				e.publishDirect(t, "fake", fmt.Sprintf("s%d", i), inbox, "", jsonReq(fmt.Sprintf("s%d", i), fmt.Sprintf("short %d", i), "pair"))
			}
			rw := startWorker(t, e, f, fakeInfo("fake"), worker.WithParallel(1), worker.WithLimits(tc.limits))
			for _, m := range collect(t, sub, n, 20*time.Second) {
				r := decodeReply(t, m).r
				var i int
				fmt.Sscanf(r.ID, "s%d", &i)
				want := expectFake(t, fmt.Sprintf("short %d", i), "pair", 32)
				if r.Error != nil || r.Logits[0] != want[0] || r.Logits[1] != want[1] {
					t.Errorf("%s: reply %+v, want logits %v", r.ID, r.Error, want)
				}
			}
			e.consumerIdle(t, "fake")
			seqs, tokens := rw.w.Stats().MaxBatch, rw.w.Stats().MaxTokens
			largest := 0
			for _, b := range f.log() {
				largest = max(largest, b.real)
				if !b.packed || b.dummy != 0 || b.masked || b.real > seqs || b.rows > tokens {
					t.Errorf("batch %+v: want packed real rows only, ≤ %d sequences and ≤ %d tokens", b, seqs, tokens)
				}
			}
			if largest <= tc.min {
				t.Errorf("largest batch %d requests, want > %d (batches %v)", largest, tc.min, f.realBatches())
			}
			t.Logf("limits %d sequences / %d tokens: batches %v", seqs, tokens, f.realBatches())
		})
	}
}

// TestWorkerMaskHoles: a pre-tokenized request whose mask has holes keeps
// its whole row and brings the batch a mask; trailing padding alone is
// trimmed, and both answer as the static layout would.
func TestWorkerMaskHoles(t *testing.T) {
	e := newEnv(t, false)
	f := newFake(4, 16)
	f.delay = 50 * time.Millisecond
	inbox := nats.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, 16)
	for i := range ids {
		ids[i] = int32(2000 + i)
	}
	holes := []int32{1, 1, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0}
	trailing := []int32{1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	types := []int32{0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	body := func(id string, mask []int32) []byte {
		b, _ := json.Marshal(map[string]any{"id": id, "input_ids": ids, "token_type_ids": types, "attention_mask": mask})
		return b
	}
	// Queued before the worker starts, so that both share a batch.
	e.publishDirect(t, "fake", "holes", inbox, "", body("holes", holes))
	e.publishDirect(t, "fake", "trailing", inbox, "", body("trailing", trailing))
	startWorker(t, e, f, fakeInfo("fake"), worker.WithParallel(1))
	for _, m := range collect(t, sub, 2, 10*time.Second) {
		r := decodeReply(t, m).r
		mask := map[string][]int32{"holes": holes, "trailing": trailing}[r.ID]
		l0, l1 := fakeLogits(ids, types, mask)
		if r.Error != nil || r.Logits[0] != l0 || r.Logits[1] != l1 {
			t.Errorf("%s: reply %+v %v, want %v %v", r.ID, r.Error, r.Logits, l0, l1)
		}
	}
	e.consumerIdle(t, "fake")
	log := f.log()
	rows := 0
	for _, b := range log {
		rows += b.rows
		if !b.packed || b.dummy != 0 {
			t.Errorf("batch %+v", b)
		}
		if b.real == 2 && (!b.masked || b.rows != 16+5) {
			t.Errorf("shared batch %+v: want a mask and 16 + 5 rows", b)
		}
	}
	if rows != 16+5 {
		t.Errorf("the engine computed %d rows (batches %+v), want 16 for the row with holes and 5 for the trimmed one", rows, log)
	}
}

// TestWorkerSharedConsumerSettings: the shared consumer keeps its settings.
// A worker without explicit settings adopts them; one that asks for others is
// refused; with WithUpdateConsumer it changes them, and a running worker
// follows.
func TestWorkerSharedConsumerSettings(t *testing.T) {
	e := newEnv(t, false)
	consumerConfig := func() jetstream.ConsumerConfig {
		t.Helper()
		c, err := e.js.Consumer(context.Background(), schemas.InferStream, schemas.WorkerDurable("fake"))
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Config
	}
	// startWorker returns once the consumer exists, which it already does
	// for all but the first worker: wait for each worker's own word.
	waitLog := func(b *testbuf.Buffer, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(b.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("no %q in the log:\n%s", want, b.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	first := &testbuf.Buffer{}
	startWorker(t, e, newFake(4, 16), fakeInfo("fake"), worker.WithAckWait(time.Minute), worker.WithMaxDeliver(4),
		worker.WithStatsInterval(20*time.Millisecond), worker.WithLogger(zerolog.New(first)))
	waitLog(first, `"ack_wait":60000,"max_deliver":4,"max_ack_pending":1024,"message":"created the shared consumer"`)

	// A second worker asking for a 2 s AckWait is refused, and the consumer stays.
	nc, err := nats.Connect(e.b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	w, err := worker.New(nc, newFake(4, 16), worker.WithInfo(fakeInfo("fake")), worker.WithAckWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second) // were it to serve
	defer cancel()
	err = w.Run(ctx)
	if !errors.Is(err, worker.ErrConsumerMismatch) || !strings.Contains(err.Error(), "ack wait is 1m0s, this worker asks 2s") {
		t.Fatalf("Run with another ack wait: %v", err)
	}
	if c := consumerConfig(); c.AckWait != time.Minute || c.MaxDeliver != 4 {
		t.Fatalf("refused worker changed the consumer: ack wait %s, max deliver %d", c.AckWait, c.MaxDeliver)
	}

	// One with no explicit settings adopts them, and serves.
	adopter := &testbuf.Buffer{}
	startWorker(t, e, newFake(4, 16), fakeInfo("fake"), worker.WithLogger(zerolog.New(adopter)))
	waitLog(adopter, `"ack_wait":60000,"max_deliver":4,"max_ack_pending":1024,"message":"adopted the shared consumer's settings"`)
	waitLog(adopter, "worker serving")
	if c := consumerConfig(); c.AckWait != time.Minute || c.MaxDeliver != 4 {
		t.Fatalf("adopting worker changed the consumer: ack wait %s, max deliver %d", c.AckWait, c.MaxDeliver)
	}

	// With WithUpdateConsumer the explicit setting wins, the others stay, and
	// the first worker follows the change.
	updater := &testbuf.Buffer{}
	startWorker(t, e, newFake(4, 16), fakeInfo("fake"), worker.WithAckWait(2*time.Second), worker.WithUpdateConsumer(true),
		worker.WithLogger(zerolog.New(updater)))
	waitLog(updater, "updated the shared consumer's settings")
	if c := consumerConfig(); c.AckWait != 2*time.Second || c.MaxDeliver != 4 {
		t.Fatalf("updated consumer: ack wait %s, max deliver %d", c.AckWait, c.MaxDeliver)
	}
	waitLog(first, `"ack_wait":2000,"max_deliver":4,"message":"the shared consumer's settings changed; following them"`)
}

// TestWorkerPoisonRow: one input the engine cannot run fails its batch; the
// worker then runs each request alone, so the three good ones are answered
// and only the bad one is retried and, at MaxDeliver, dead-lettered.
func TestWorkerPoisonRow(t *testing.T) {
	e := newEnv(t, false)
	f := newFake(4, 16)
	tok := tokenizer.Default()
	var ok bool
	if f.poison, ok = tok.TokenID("poison"); !ok {
		t.Fatal(`the vocabulary lacks "poison"`)
	}
	inbox := nats.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	// Queued before the worker starts, they usually arrive in one batch; how
	// they are split depends on when each was decoded, and does not matter:
	// whatever batch the poison row is in fails, its batch-mates are re-run
	// alone and answered.
	texts := map[string]string{"p1": "a good sentence", "p2": "another good one", "p3": "this is poison", "p4": "the last good one"}
	for _, id := range []string{"p1", "p2", "p3", "p4"} {
		e.publishDirect(t, "fake", id, inbox, "", jsonReq(id, texts[id], ""))
	}
	rw := startWorker(t, e, f, fakeInfo("fake"), worker.WithMaxDeliver(2), worker.WithRetryDelay(20*time.Millisecond))
	for _, m := range collect(t, sub, 4, 10*time.Second) {
		r := decodeReply(t, m).r
		if r.ID == "p3" {
			if r.Error == nil || r.Error.Code != schemas.CodeInternal || !strings.Contains(r.Error.Message, schemas.DeadStream) {
				t.Errorf("poison reply %+v", r)
			}
			continue
		}
		want := expectFake(t, texts[r.ID], "", 16)
		if r.Error != nil || r.Logits[0] != want[0] || r.Logits[1] != want[1] {
			t.Errorf("%s: reply %+v, want logits %v", r.ID, r, want)
		}
	}
	e.consumerIdle(t, "fake")
	ds, err := e.js.Stream(context.Background(), schemas.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := ds.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dead, err := ds.GetLastMsgForSubject(context.Background(), schemas.DeadSubject("fake"))
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 || dead.Header.Get(schemas.HeaderMsgID) != "p3" || !strings.Contains(dead.Header.Get(schemas.HeaderDeadReason), errPoison.Error()) {
		t.Errorf("%d dead letters, the last %s %v", info.State.Msgs, dead.Data, dead.Header)
	}
	// Delivery 1: p3's batch fails, then (when it had batch-mates) p3 alone;
	// delivery 2: p3 fails alone. Every failed run is counted, no good row
	// ever failed.
	s := rw.w.Stats()
	failedRuns := f.calls.Load() - int64(len(f.log()))
	if s.Answered != 3 || s.DeadLetters != 1 || s.Retries != 1 || (s.FailedBatch != 2 && s.FailedBatch != 3) || int64(s.FailedBatch) != failedRuns {
		t.Errorf("stats %+v; the engine failed %d runs", s, failedRuns)
	}
	for _, b := range f.log() {
		if b.real < 1 {
			t.Errorf("a completed batch %+v", b)
		}
	}
}

// TestWorkerPullResize: under a steady stream a fast engine widens the pull
// window (the next fetches are larger), and every request is still answered
// exactly once and acked.
func TestWorkerPullResize(t *testing.T) {
	e := newEnv(t, false)
	f := newFake(4, 16)
	inbox := nats.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	logs := &testbuf.Buffer{}
	startWorker(t, e, f, fakeInfo("fake"), worker.WithParallel(1), worker.WithLogger(zerolog.New(logs)))
	const n = 3000
	js, err := jetstream.New(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ { // about 2.5 s of traffic
		m := nats.NewMsg(schemas.WorkSubject("fake"))
		m.Data = jsonReq(fmt.Sprintf("r%d", i), "stream", "")
		m.Header.Set(schemas.HeaderReplyTo, inbox)
		if _, err := js.PublishMsgAsync(m); err != nil {
			t.Fatal(err)
		}
		if i%100 == 99 {
			<-js.PublishAsyncComplete()
			time.Sleep(80 * time.Millisecond)
		}
	}
	seen := map[string]int{}
	for _, m := range collect(t, sub, n, 60*time.Second) {
		seen[decodeReply(t, m).r.ID]++
	}
	e.consumerIdle(t, "fake")
	if extra, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Errorf("a reply beyond the %d requests: %s", n, extra.Data)
	}
	if len(seen) != n {
		t.Errorf("%d distinct ids answered of %d", len(seen), n)
	}
	if !strings.Contains(logs.String(), "pull window resized") {
		t.Errorf("the pull window never followed the engine:\n%s", logs.String())
	}
}
