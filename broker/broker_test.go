package broker_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/internal/natstest"
	"github.com/bertq/bertq/schemas"
)

// env is an embedded broker with a connected client.
type env struct {
	b  *broker.Broker
	nc *nats.Conn
	js jetstream.JetStream
}

func startBroker(t testing.TB, opts ...broker.Option) *env {
	t.Helper()
	e := natstest.Start(t, opts...)
	return &env{b: e.Broker, nc: e.NC, js: e.JS}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// provisioned starts a broker, provisions it, stores a model named "tiny" and
// starts the intake.
func provisioned(t *testing.T, popts []broker.ProvisionOption, iopts ...broker.IntakeOption) *env {
	t.Helper()
	e := startBroker(t)
	ctx := ctxT(t)
	if err := broker.Provision(ctx, e.js, popts...); err != nil {
		t.Fatal(err)
	}
	putModel(t, e, "tiny")
	in, err := broker.StartIntake(e.nc, iopts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	return e
}

func putModel(t testing.TB, e *env, name string) {
	t.Helper()
	ctx := ctxT(t)
	obs, err := e.js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, name, []byte("artifact bytes")); err != nil {
		t.Fatal(err)
	}
}

func TestStartClientURL(t *testing.T) {
	e := startBroker(t)
	if !strings.HasPrefix(e.b.ClientURL(), "nats://127.0.0.1:") || strings.HasSuffix(e.b.ClientURL(), ":-1") {
		t.Fatalf("client URL %q", e.b.ClientURL())
	}
	if !e.b.Server().JetStreamEnabled() {
		t.Fatal("JetStream not enabled")
	}
}

func TestStartWithConfigFile(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "from-config")
	cfg := filepath.Join(dir, "nats.conf")
	conf := "host: 127.0.0.1\nport: -1\nserver_name: cfgtest\njetstream {\n  store_dir: \"" + store + "\"\n}\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := broker.Start(broker.WithConfigFile(cfg))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { b.Shutdown(); b.WaitForShutdown() }()
	if got := b.Server().Name(); got != "cfgtest" {
		t.Errorf("server name %q, want the config's", got)
	}
	if _, err := os.Stat(filepath.Join(store, "jetstream")); err != nil {
		t.Errorf("store dir from the config not used: %v", err)
	}
	if _, err := broker.Start(broker.WithConfigFile(filepath.Join(dir, "missing.conf"))); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestProvisionIdempotent(t *testing.T) {
	e := startBroker(t)
	ctx := ctxT(t)
	for i := 0; i < 2; i++ {
		if err := broker.Provision(ctx, e.js, broker.WithMaxQueue(500)); err != nil {
			t.Fatalf("run %d: %v", i+1, err)
		}
	}
	s, err := e.js.Stream(ctx, schemas.InferStream)
	if err != nil {
		t.Fatal(err)
	}
	c := s.CachedInfo().Config
	if c.Retention != jetstream.WorkQueuePolicy || c.Discard != jetstream.DiscardNew || c.Storage != jetstream.FileStorage ||
		c.MaxMsgs != 500 || c.Duplicates != broker.DefaultDuplicates || len(c.Subjects) != 1 || c.Subjects[0] != schemas.WorkSubjectPrefix+">" {
		t.Errorf("infer stream config %+v", c)
	}
	if _, err := e.js.Publish(ctx, schemas.WorkSubject("m"), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	// A third run with other limits updates in place and keeps the messages.
	if err := broker.Provision(ctx, e.js, broker.WithMaxQueue(1000)); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxMsgs != 1000 || info.State.Msgs != 1 {
		t.Errorf("after update: max %d, msgs %d", info.Config.MaxMsgs, info.State.Msgs)
	}
	d, err := e.js.Stream(ctx, schemas.DeadStream)
	if err != nil {
		t.Fatal(err)
	}
	if dc := d.CachedInfo().Config; dc.Retention != jetstream.LimitsPolicy || dc.Subjects[0] != schemas.DeadSubjectPrefix+">" {
		t.Errorf("dead stream config %+v", dc)
	}
	cs, err := e.js.Stream(ctx, schemas.CompileStream)
	if err != nil {
		t.Fatal(err)
	}
	if cc := cs.CachedInfo().Config; cc.Retention != jetstream.WorkQueuePolicy || cc.Subjects[0] != schemas.CompileWorkSubject {
		t.Errorf("compile stream config %+v", cc)
	}
	for _, b := range []string{schemas.ModelBucket, schemas.CheckpointBucket} {
		if _, err := e.js.ObjectStore(ctx, b); err != nil {
			t.Errorf("bucket %s: %v", b, err)
		}
	}
}

// lastWork returns the last queued message for subject.
func lastWork(t *testing.T, e *env, stream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx := ctxT(t)
	s, err := e.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	var m *jetstream.RawStreamMsg
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err = s.GetLastMsgForSubject(ctx, subject)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("no message on %s: %v", subject, err)
	}
	return m
}

func TestIntakeRepublishes(t *testing.T) {
	e := provisioned(t, nil)
	inbox := nats.NewInbox()
	payload := []byte(`{"id":"req-1","a":"The cat sat.","b":"A cat was sitting.","future_field":[1,2]}`)
	before := time.Now()
	if err := e.nc.PublishMsg(&nats.Msg{Subject: schemas.InferSubject("tiny"), Reply: inbox, Data: payload}); err != nil {
		t.Fatal(err)
	}
	m := lastWork(t, e, schemas.InferStream, schemas.WorkSubject("tiny"))
	if !bytes.Equal(m.Data, payload) {
		t.Errorf("payload changed:\n got %s\nwant %s", m.Data, payload)
	}
	h := m.Header
	if h.Get(schemas.HeaderReplyTo) != inbox || h.Get(schemas.HeaderMsgID) != "req-1" || h.Get(schemas.HeaderContentType) != schemas.ContentTypeJSON {
		t.Errorf("headers %v", h)
	}
	at, err := time.Parse(time.RFC3339Nano, h.Get(schemas.HeaderEnqueued))
	if err != nil || at.Before(before.Add(-time.Second)) || at.After(time.Now().Add(time.Second)) {
		t.Errorf("Bertq-Enqueued %q: %v", h.Get(schemas.HeaderEnqueued), err)
	}
}

func TestIntakeAssignsID(t *testing.T) {
	e := provisioned(t, nil)
	for _, tc := range []struct {
		name string
		enc  schemas.Encoding
		body []byte
	}{
		{"json", schemas.JSON, []byte(`{"a":"x","extra":{"k":1}}`)},
		{"json-empty-id", schemas.JSON, []byte(`{"id":"","a":"x","extra":true}`)},
		{"msgpack", schemas.Msgpack, mustMsgpack(t, map[string]any{"a": "x", "extra": 7})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			putModel(t, e, tc.name) // a subject of its own, so the last message is this one
			m := nats.NewMsg(schemas.InferSubject(tc.name))
			m.Reply = nats.NewInbox()
			m.Data = tc.body
			if tc.enc == schemas.Msgpack {
				m.Header.Set(schemas.HeaderContentType, schemas.ContentTypeMsgpack)
			}
			if err := e.nc.PublishMsg(m); err != nil {
				t.Fatal(err)
			}
			got := lastWork(t, e, schemas.InferStream, schemas.WorkSubject(tc.name))
			var fields map[string]any
			if err := schemas.Unmarshal(tc.enc, got.Data, &fields); err != nil {
				t.Fatal(err)
			}
			id, _ := fields["id"].(string)
			if id == "" || got.Header.Get(schemas.HeaderMsgID) != id {
				t.Errorf("id %q, Nats-Msg-Id %q", id, got.Header.Get(schemas.HeaderMsgID))
			}
			if fields["a"] != "x" || fields["extra"] == nil {
				t.Errorf("fields lost: %v", fields)
			}
		})
	}
}

func mustMsgpack(t *testing.T, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// request sends data to subject and decodes the reply as an InferReply.
func request(t *testing.T, e *env, subject string, contentType string, data []byte) (*nats.Msg, schemas.InferReply) {
	t.Helper()
	m := nats.NewMsg(subject)
	m.Data = data
	if contentType != "" {
		m.Header.Set(schemas.HeaderContentType, contentType)
	}
	resp, err := e.nc.RequestMsg(m, 5*time.Second)
	if err != nil {
		t.Fatalf("request to %s: %v", subject, err)
	}
	var r schemas.InferReply
	enc := schemas.Detect(resp.Header.Get(schemas.HeaderContentType), resp.Data)
	if err := schemas.Unmarshal(enc, resp.Data, &r); err != nil {
		t.Fatalf("reply %q: %v", resp.Data, err)
	}
	return resp, r
}

func TestIntakeErrors(t *testing.T) {
	e := provisioned(t, nil)
	for _, tc := range []struct {
		name, subject, ct string
		body              []byte
		code              string
		replyCT           string
	}{
		{"unknown model", schemas.InferSubject("nope"), "", []byte(`{"id":"u1","a":"x"}`), schemas.CodeUnknownModel, schemas.ContentTypeJSON},
		{"bad model name", schemas.InferSubject("a%b"), "", []byte(`{"id":"u2","a":"x"}`), schemas.CodeUnknownModel, schemas.ContentTypeJSON},
		{"not json", schemas.InferSubject("tiny"), "", []byte(`hello`), schemas.CodeBadEncoding, schemas.ContentTypeJSON},
		{"json array", schemas.InferSubject("tiny"), "", []byte(`[1,2]`), schemas.CodeBadEncoding, schemas.ContentTypeJSON},
		{"empty", schemas.InferSubject("tiny"), "", nil, schemas.CodeBadEncoding, schemas.ContentTypeJSON},
		{"bad msgpack", schemas.InferSubject("tiny"), schemas.ContentTypeMsgpack, []byte{0xc1, 0x00}, schemas.CodeBadEncoding, schemas.ContentTypeMsgpack},
		{"id not a string", schemas.InferSubject("tiny"), "", []byte(`{"id":5,"a":"x"}`), schemas.CodeBadRequest, schemas.ContentTypeJSON},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, r := request(t, e, tc.subject, tc.ct, tc.body)
			if r.Error == nil || r.Error.Code != tc.code || r.Error.Message == "" {
				t.Fatalf("reply %+v, want code %s", r, tc.code)
			}
			if resp.Header.Get(schemas.HeaderErrorCode) != tc.code || resp.Header.Get(schemas.HeaderContentType) != tc.replyCT {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}
	// The unknown-model reply carries the request's id.
	_, r := request(t, e, schemas.InferSubject("nope"), "", []byte(`{"id":"keep-me","a":"x"}`))
	if r.ID != "keep-me" {
		t.Errorf("id %q", r.ID)
	}
}

// TestIntakeFollowsTheBucket: a model stored after the intake started is
// served at once (the watch may trail the store; the intake then asks the
// bucket), and a deleted one is refused.
func TestIntakeFollowsTheBucket(t *testing.T) {
	e := provisioned(t, nil)
	if _, r := request(t, e, schemas.InferSubject("later"), "", []byte(`{"a":"x"}`)); r.Error == nil || r.Error.Code != schemas.CodeUnknownModel {
		t.Fatalf("reply %+v", r)
	}
	putModel(t, e, "later")
	if err := e.nc.PublishRequest(schemas.InferSubject("later"), nats.NewInbox(), []byte(`{"id":"l1","a":"x"}`)); err != nil {
		t.Fatal(err)
	}
	if m := lastWork(t, e, schemas.InferStream, schemas.WorkSubject("later")); m.Header.Get(schemas.HeaderMsgID) != "l1" {
		t.Errorf("queued %v", m.Header)
	}
	obs, err := e.js.ObjectStore(ctxT(t), schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(ctxT(t), "later"); err != nil {
		t.Fatal(err)
	}
	// Until the watch shows the deletion, a request may still be queued
	// (and go unanswered here, with no worker): ask until refused.
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := e.nc.Request(schemas.InferSubject("later"), []byte(`{"a":"x"}`), 200*time.Millisecond)
		if err == nil && resp.Header.Get(schemas.HeaderErrorCode) == schemas.CodeUnknownModel {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a deleted model is still accepted: %v", err)
		}
	}
}

func TestIntakeQueueFull(t *testing.T) {
	e := provisioned(t, []broker.ProvisionOption{broker.WithMaxQueue(2)})
	for i, id := range []string{"q1", "q2"} {
		if err := e.nc.PublishRequest(schemas.InferSubject("tiny"), nats.NewInbox(), []byte(`{"id":"`+id+`","a":"x"}`)); err != nil {
			t.Fatal(i, err)
		}
	}
	if err := e.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	lastWork(t, e, schemas.InferStream, schemas.WorkSubject("tiny"))
	deadline := time.Now().Add(5 * time.Second)
	for {
		s, _ := e.js.Stream(ctxT(t), schemas.InferStream)
		if s.CachedInfo().State.Msgs == 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	resp, r := request(t, e, schemas.InferSubject("tiny"), "", []byte(`{"id":"q3","a":"x"}`))
	if r.Error == nil || r.Error.Code != schemas.CodeQueueFull || !strings.Contains(r.Error.Message, "queue full") || r.ID != "q3" {
		t.Fatalf("reply %+v", r)
	}
	if resp.Header.Get(schemas.HeaderErrorCode) != schemas.CodeQueueFull {
		t.Errorf("headers %v", resp.Header)
	}
}

func TestIntakeDuplicateID(t *testing.T) {
	e := provisioned(t, nil)
	if err := e.nc.PublishRequest(schemas.InferSubject("tiny"), nats.NewInbox(), []byte(`{"id":"dup","a":"x"}`)); err != nil {
		t.Fatal(err)
	}
	lastWork(t, e, schemas.InferStream, schemas.WorkSubject("tiny"))
	_, r := request(t, e, schemas.InferSubject("tiny"), "", []byte(`{"id":"dup","a":"y"}`))
	if r.Error == nil || r.Error.Code != schemas.CodeDuplicate || !strings.Contains(r.Error.Message, "duplicate") {
		t.Fatalf("reply %+v", r)
	}
}

func TestIntakeCompile(t *testing.T) {
	e := provisioned(t, nil)
	inbox := nats.NewInbox()
	job := []byte(`{"id":"c1","name":"big","source":"synthetic:bert-large","batch":4}`)
	if err := e.nc.PublishRequest(schemas.CompileSubject, inbox, job); err != nil {
		t.Fatal(err)
	}
	m := lastWork(t, e, schemas.CompileStream, schemas.CompileWorkSubject)
	if !bytes.Equal(m.Data, job) || m.Header.Get(schemas.HeaderReplyTo) != inbox || m.Header.Get(schemas.HeaderMsgID) != "c1" {
		t.Errorf("queued %s %v", m.Data, m.Header)
	}
	for _, bad := range []string{`{"id":"c2","name":"bad name","source":"x"}`, `{"id":"c3","name":"ok"}`, `{"id":"c4","name":"ok","source":"x","batch":"four"}`} {
		resp, err := e.nc.Request(schemas.CompileSubject, []byte(bad), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var r schemas.CompileResult
		if err := schemas.Unmarshal(schemas.JSON, resp.Data, &r); err != nil {
			t.Fatal(err)
		}
		if r.Error == nil || r.Error.Code != schemas.CodeBadCompileJob || r.ID == "" {
			t.Errorf("%s: reply %+v", bad, r)
		}
	}
}

func TestIntakeUnprovisioned(t *testing.T) {
	e := startBroker(t)
	in, err := broker.StartIntake(e.nc)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	_, r := request(t, e, schemas.InferSubject("tiny"), "", []byte(`{"a":"x"}`))
	if r.Error == nil || r.Error.Code != schemas.CodeUnavailable || !strings.Contains(r.Error.Message, "provision") {
		t.Fatalf("reply %+v", r)
	}
}

// TestIntakeDeadLettersExhausted: a request whose deliveries run out with no
// worker acking (it crashed, or hung past AckWait) is moved to the dead-letter
// stream with its headers, removed from the queue, and its caller told.
func TestIntakeDeadLettersExhausted(t *testing.T) {
	e := provisioned(t, nil)
	ctx := ctxT(t)
	c, err := e.js.CreateOrUpdateConsumer(ctx, schemas.InferStream, jetstream.ConsumerConfig{
		Durable: schemas.WorkerDurable("tiny"), FilterSubject: schemas.WorkSubject("tiny"),
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 100 * time.Millisecond, MaxDeliver: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	inbox := nats.NewInbox()
	sub, err := e.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"id":"crash-1","a":"x"}`)
	if err := e.nc.PublishRequest(schemas.InferSubject("tiny"), inbox, body); err != nil {
		t.Fatal(err)
	}
	// Two deliveries never acked, as if the worker died each time.
	for i := 0; i < 2; i++ {
		b, err := c.Fetch(1, jetstream.FetchMaxWait(3*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range b.Messages() {
			n++
		}
		if n != 1 {
			t.Fatalf("delivery %d: got %d messages", i+1, n)
		}
		time.Sleep(150 * time.Millisecond)
	}
	// The next pull makes JetStream notice the exhausted message.
	if b, err := c.Fetch(1, jetstream.FetchMaxWait(300*time.Millisecond)); err == nil {
		for m := range b.Messages() {
			t.Fatalf("delivered a third time: %s", m.Data())
		}
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var r schemas.InferReply
	if err := json.Unmarshal(m.Data, &r); err != nil {
		t.Fatal(err)
	}
	if r.Error == nil || r.Error.Code != schemas.CodeInternal || r.ID != "crash-1" || !strings.Contains(r.Error.Message, schemas.DeadStream) {
		t.Fatalf("reply %+v", r)
	}
	dead := lastWork(t, e, schemas.DeadStream, schemas.DeadSubject("tiny"))
	if !bytes.Equal(dead.Data, body) || dead.Header.Get(schemas.HeaderReplyTo) != inbox || dead.Header.Get(schemas.HeaderDeadReason) == "" {
		t.Errorf("dead letter %s %v", dead.Data, dead.Header)
	}
	s, _ := e.js.Stream(ctx, schemas.InferStream)
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 0 {
		t.Errorf("%d messages left in the queue", info.State.Msgs)
	}
}
