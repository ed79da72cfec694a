package client_test

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/client"
	"github.com/bertq/bertq/internal/natstest"
	"github.com/bertq/bertq/schemas"
)

// answerFunc is a fake intake: it gets each request and its attempt number
// for that id, and answers with the replies it returns (none: silence).
type answerFunc func(req schemas.InferRequest, attempt int) []*schemas.InferReply

// fakeIntake serves model's intake subject on nc and records every request.
type fakeIntake struct {
	mu   sync.Mutex
	reqs []schemas.InferRequest
	msgs []*nats.Msg
	seen map[string]int
}

func serve(t *testing.T, nc *nats.Conn, model string, answer answerFunc) *fakeIntake {
	t.Helper()
	f := &fakeIntake{seen: map[string]int{}}
	sub, err := nc.Subscribe(schemas.InferSubject(model), func(m *nats.Msg) {
		var req schemas.InferRequest
		enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
		if err := schemas.Unmarshal(enc, m.Data, &req); err != nil {
			t.Errorf("undecodable request: %v", err)
			return
		}
		f.mu.Lock()
		f.reqs = append(f.reqs, req)
		f.msgs = append(f.msgs, m)
		f.seen[req.ID]++
		n := f.seen[req.ID]
		f.mu.Unlock()
		for _, rep := range answer(req, n) {
			data, _ := schemas.Marshal(enc, rep)
			out := &nats.Msg{Subject: m.Reply, Header: nats.Header{}, Data: data}
			out.Header.Set(schemas.HeaderContentType, enc.ContentType())
			if rep.Error != nil {
				out.Header.Set(schemas.HeaderErrorCode, rep.Error.Code)
			}
			if err := nc.PublishMsg(out); err != nil {
				t.Error(err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fakeIntake) requests() []schemas.InferRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]schemas.InferRequest(nil), f.reqs...)
}

func ok(req schemas.InferRequest) *schemas.InferReply {
	return &schemas.InferReply{V: 1, ID: req.ID, Model: req.Model, Label: "equivalent", LabelIndex: 1, Probabilities: []float32{0.25, 0.75}, BatchSize: 1}
}

func failure(req schemas.InferRequest, code string) *schemas.InferReply {
	return &schemas.InferReply{V: 1, ID: req.ID, Error: schemas.Errorf(code, "test says %s", code)}
}

func newClient(t *testing.T, nc *nats.Conn, opts ...client.Option) *client.Client {
	t.Helper()
	c, err := client.New(nc, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestSentinelPerCode: every code constant in schemas/errors.go has its
// sentinel, and an *Error matches its own and no other.
func TestSentinelPerCode(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "../schemas/errors.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	var codes []string
	ast.Inspect(f, func(n ast.Node) bool {
		vs, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range vs.Names {
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(name.Name, "Code") && lit.Kind == token.STRING {
				s, _ := strconv.Unquote(lit.Value)
				codes = append(codes, s)
			}
		}
		return true
	})
	if len(codes) < 10 {
		t.Fatalf("found only %d codes in schemas/errors.go: %v", len(codes), codes)
	}
	for _, code := range codes {
		s := client.Sentinel(code)
		if s == nil {
			t.Errorf("no sentinel for code %q", code)
			continue
		}
		err := error(&client.Error{Code: code, Message: "m"})
		for _, other := range codes {
			if got := errors.Is(err, client.Sentinel(other)); got != (other == code) {
				t.Errorf("errors.Is(Error{%s}, sentinel of %s) = %v", code, other, got)
			}
		}
		if !strings.Contains(s.Error(), code) {
			t.Errorf("sentinel of %s reads %q", code, s)
		}
	}
}

func TestInferEncodingsIDsAndDeadline(t *testing.T) {
	e := natstest.Start(t)
	intake := serve(t, e.NC, "m", func(req schemas.InferRequest, _ int) []*schemas.InferReply { return []*schemas.InferReply{ok(req)} })
	for _, enc := range []client.Encoding{client.JSON, client.Msgpack} {
		c := newClient(t, e.NC, client.WithEncoding(enc))
		deadline := time.Now().Add(7 * time.Second)
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		r, err := c.Infer(ctx, "m", "first", "second")
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if r.Label != "equivalent" || r.Probabilities[1] != 0.75 || len(r.ID) != 22 {
			t.Errorf("%s: reply %+v (want a 22-character NUID id)", enc, r)
		}
		r2, err := c.Infer(context.Background(), "m", "x", "", client.WithID("given-id"))
		if err != nil || r2.ID != "given-id" {
			t.Fatalf("%s: given id: %+v, %v", enc, r2, err)
		}
		reqs := intake.requests()
		last := reqs[len(reqs)-2:]
		if last[0].A != "first" || last[0].B != "second" || last[0].Model != "m" || last[0].V != schemas.Version || !last[0].Deadline.Equal(deadline.UTC().Round(0)) {
			t.Errorf("%s: request %+v, want deadline %v", enc, last[0], deadline.UTC())
		}
		if d := time.Until(last[1].Deadline); d < client.DefaultTimeout-5*time.Second || d > client.DefaultTimeout {
			t.Errorf("%s: without a context deadline the request's deadline is %v away, want about %v", enc, d, client.DefaultTimeout)
		}
		intake.mu.Lock()
		m := intake.msgs[len(intake.msgs)-1]
		intake.mu.Unlock()
		if m.Header.Get(schemas.HeaderContentType) != enc.ContentType() || !strings.HasPrefix(m.Reply, "_INBOX.") {
			t.Errorf("%s: content type %q, reply %q", enc, m.Header.Get(schemas.HeaderContentType), m.Reply)
		}
	}
}

// TestErrorReplies: every code answered comes back as its sentinel.
func TestErrorReplies(t *testing.T) {
	e := natstest.Start(t)
	c := newClient(t, e.NC)
	codes := []string{schemas.CodeBadEncoding, schemas.CodeBadRequest, schemas.CodeMissingField, schemas.CodeInvalidUTF8,
		schemas.CodeOutOfRange, schemas.CodeWrongLength, schemas.CodeDeadline, schemas.CodeUnknownModel, schemas.CodeQueueFull,
		schemas.CodeUnavailable, schemas.CodeInternal, schemas.CodeDuplicate}
	for _, code := range codes {
		model := "m-" + strings.ReplaceAll(code, "_", "-")
		serve(t, e.NC, model, func(req schemas.InferRequest, _ int) []*schemas.InferReply {
			return []*schemas.InferReply{failure(req, code)}
		})
		_, err := c.Infer(within(t, 5*time.Second), model, "a", "b", client.WithID("id-"+code))
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Code != code || ce.ID != "id-"+code || ce.Message != "test says "+code || !errors.Is(err, client.Sentinel(code)) {
			t.Errorf("%s: err = %#v", code, err)
		}
		if got := errors.Is(err, context.DeadlineExceeded); got != (code == schemas.CodeDeadline) {
			t.Errorf("%s: errors.Is(err, context.DeadlineExceeded) = %v", code, got)
		}
	}
	// A micro endpoint's error may come as headers only.
	sub, _ := e.NC.Subscribe(schemas.InferSubject("headers-only"), func(m *nats.Msg) {
		out := nats.NewMsg(m.Reply)
		out.Header.Set(micro.ErrorCodeHeader, schemas.CodeQueueFull)
		out.Header.Set(micro.ErrorHeader, "full")
		e.NC.PublishMsg(out)
	})
	defer sub.Unsubscribe()
	_, err := c.Infer(within(t, 5*time.Second), "headers-only", "a", "b")
	if !errors.Is(err, client.ErrQueueFull) || !strings.Contains(err.Error(), "full") {
		t.Errorf("headers-only error: %v", err)
	}
	// And a reply that is no reply at all.
	sub2, _ := e.NC.Subscribe(schemas.InferSubject("garbage"), func(m *nats.Msg) { m.Respond([]byte("[1,2")) })
	defer sub2.Unsubscribe()
	if _, err := c.Infer(within(t, 5*time.Second), "garbage", "a", "b"); !errors.Is(err, client.ErrBadReply) {
		t.Errorf("garbage reply: %v", err)
	}
}

// TestRetryKeepsTheID: the first copy vanishes, the second is refused as
// unavailable, the third meets "duplicate_id" and then the answer: the call
// succeeds, and every copy carried the same id.
func TestRetryKeepsTheID(t *testing.T) {
	e := natstest.Start(t)
	intake := serve(t, e.NC, "flaky", func(req schemas.InferRequest, n int) []*schemas.InferReply {
		switch n {
		case 1:
			return nil
		case 2:
			return []*schemas.InferReply{failure(req, schemas.CodeUnavailable)}
		case 3:
			return []*schemas.InferReply{failure(req, schemas.CodeDuplicate), ok(req)}
		}
		return []*schemas.InferReply{failure(req, schemas.CodeDuplicate)}
	})
	c := newClient(t, e.NC, client.WithRetry(150*time.Millisecond))
	var futures []*client.Future
	for i := range 5 {
		f, err := c.InferAsync(within(t, 10*time.Second), "flaky", client.Text{A: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		if r, err := f.Result(); err != nil || r.ID != f.ID() {
			t.Fatalf("%s: %+v, %v", f.ID(), r, err)
		}
	}
	intake.mu.Lock()
	defer intake.mu.Unlock()
	if len(intake.seen) != 5 {
		t.Errorf("%d distinct ids reached the intake for 5 calls: re-sends must keep the id", len(intake.seen))
	}
	for id, n := range intake.seen {
		if n < 3 {
			t.Errorf("id %s sent %d times, want at least 3", id, n)
		}
	}
	if s := c.Stats(); s.Resends < 10 || s.Calls != 5 || s.Pending != 0 {
		t.Errorf("stats %+v", s)
	}
}

// TestNoRetry: without WithRetry, unavailable is final and silence ends at
// the deadline with ErrTimeout; a first send meeting duplicate_id fails
// with or without retries.
func TestNoRetry(t *testing.T) {
	e := natstest.Start(t)
	serve(t, e.NC, "unavail", func(req schemas.InferRequest, _ int) []*schemas.InferReply {
		return []*schemas.InferReply{failure(req, schemas.CodeUnavailable)}
	})
	serve(t, e.NC, "silent", func(schemas.InferRequest, int) []*schemas.InferReply { return nil })
	dup := serve(t, e.NC, "dup", func(req schemas.InferRequest, _ int) []*schemas.InferReply {
		return []*schemas.InferReply{failure(req, schemas.CodeDuplicate)}
	})
	c := newClient(t, e.NC)
	if _, err := c.Infer(within(t, 5*time.Second), "unavail", "a", "b"); !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("unavailable: %v", err)
	}
	start := time.Now()
	_, err := c.Infer(within(t, 300*time.Millisecond), "silent", "a", "b")
	if !errors.Is(err, client.ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 250*time.Millisecond {
		t.Errorf("silence: %v after %v", err, time.Since(start))
	}
	short := newClient(t, e.NC, client.WithTimeout(200*time.Millisecond))
	if _, err := short.Infer(context.Background(), "silent", "a", "b"); !errors.Is(err, client.ErrTimeout) {
		t.Errorf("silence with WithTimeout: %v", err)
	}
	retrying := newClient(t, e.NC, client.WithRetry(100*time.Millisecond))
	for _, c := range []*client.Client{c, retrying} {
		if _, err := c.Infer(within(t, 5*time.Second), "dup", "a", "b"); !errors.Is(err, client.ErrDuplicate) {
			t.Errorf("duplicate on the first send: %v", err)
		}
	}
	if n := len(dup.requests()); n != 2 {
		t.Errorf("the duplicate was sent %d times, want once per client", n)
	}
}

func TestNoResponders(t *testing.T) {
	e := natstest.Start(t)
	c := newClient(t, e.NC, client.WithRetry(100*time.Millisecond))
	start := time.Now()
	_, err := c.Infer(within(t, 10*time.Second), "nobody", "a", "b")
	if !errors.Is(err, client.ErrNoResponders) || !errors.Is(err, nats.ErrNoResponders) || !strings.Contains(err.Error(), "bert.infer.nobody") {
		t.Fatalf("err = %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("took %v: no responders should fail at once", time.Since(start))
	}
}

func TestCancel(t *testing.T) {
	e := natstest.Start(t)
	serve(t, e.NC, "silent", func(schemas.InferRequest, int) []*schemas.InferReply { return nil })
	c := newClient(t, e.NC)
	ctx, cancel := context.WithCancel(context.Background())
	f, err := c.InferAsync(ctx, "silent", client.Text{A: "a"})
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(50*time.Millisecond, cancel)
	select {
	case <-f.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling did not end the call")
	}
	if _, err := f.Result(); !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrTimeout) {
		t.Errorf("err = %v", err)
	}
	if _, err := c.Infer(ctx, "silent", "a", "b"); !errors.Is(err, context.Canceled) {
		t.Errorf("a done context: %v", err)
	}
}

// TestStrays: replies no call waits for go to the stray handler.
func TestStrays(t *testing.T) {
	e := natstest.Start(t)
	serve(t, e.NC, "twice", func(req schemas.InferRequest, _ int) []*schemas.InferReply {
		return []*schemas.InferReply{ok(req), ok(req)}
	})
	serve(t, e.NC, "late", func(req schemas.InferRequest, _ int) []*schemas.InferReply {
		time.Sleep(300 * time.Millisecond)
		return []*schemas.InferReply{ok(req)}
	})
	var mu sync.Mutex
	var strays []string
	c := newClient(t, e.NC, client.WithStrayHandler(func(r *client.Reply, err error) {
		mu.Lock()
		strays = append(strays, r.ID)
		mu.Unlock()
	}))
	if _, err := c.Infer(within(t, 5*time.Second), "twice", "a", "b", client.WithID("two")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Infer(within(t, 100*time.Millisecond), "late", "a", "b", client.WithID("three")); !errors.Is(err, client.ErrTimeout) {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for c.Stats().Strays < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(strays) != "[two three]" || c.Stats().Strays != 2 {
		t.Errorf("strays %v, stats %+v", strays, c.Stats())
	}
}

func TestClose(t *testing.T) {
	e := natstest.Start(t)
	serve(t, e.NC, "silent", func(schemas.InferRequest, int) []*schemas.InferReply { return nil })
	c := newClient(t, e.NC)
	f, err := c.InferAsync(within(t, 10*time.Second), "silent", client.Text{A: "a"})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := f.Result(); !errors.Is(err, client.ErrClosed) {
		t.Errorf("pending call: %v", err)
	}
	if _, err := c.Infer(within(t, time.Second), "silent", "a", "b"); !errors.Is(err, client.ErrClosed) {
		t.Errorf("after Close: %v", err)
	}

	nc, err := nats.Connect(e.Broker.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	c2 := newClient(t, nc)
	f, err = c2.InferAsync(within(t, 10*time.Second), "silent", client.Text{A: "a"})
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	select {
	case <-f.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("closing the connection did not end the call")
	}
	if _, err := f.Result(); !errors.Is(err, client.ErrClosed) || !errors.Is(err, nats.ErrConnectionClosed) {
		t.Errorf("closed connection: %v", err)
	}
}

func TestInvalidArguments(t *testing.T) {
	e := natstest.Start(t)
	c := newClient(t, e.NC)
	ctx := within(t, time.Second)
	if _, err := c.Infer(ctx, "bad.name", "a", "b"); !errors.Is(err, client.ErrUnknownModel) {
		t.Errorf("bad model name: %v", err)
	}
	if _, err := c.Infer(ctx, "m", "a", "b", client.WithID(strings.Repeat("x", schemas.MaxIDLen+1))); !errors.Is(err, client.ErrBadRequest) {
		t.Errorf("long id: %v", err)
	}
	if _, err := c.Infer(ctx, "m", "a", "b", client.WithID("\xff")); !errors.Is(err, client.ErrInvalidUTF8) {
		t.Errorf("invalid id: %v", err)
	}
	if _, err := c.Enqueue(ctx, "m", client.Text{A: "a"}, "not.an.inbox"); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("reply subject outside _INBOX: %v", err)
	}
	for _, opts := range [][]client.Option{
		{client.WithInboxPrefix("replies.mine")},
		{client.WithInboxPrefix("_INBOX.a*b")},
		{client.WithTimeout(-time.Second)},
		{client.WithEncoding(client.Encoding(7))},
	} {
		if _, err := client.New(e.NC, opts...); !errors.Is(err, client.ErrInvalidOption) {
			t.Errorf("New with bad options: %v", err)
		}
	}
	if _, err := client.New(nil); !errors.Is(err, client.ErrInvalidOption) {
		t.Errorf("New(nil): %v", err)
	}
}

// TestInboxPrefix: replies come below the prefix given (a user allowed to
// subscribe only there).
func TestInboxPrefix(t *testing.T) {
	e := natstest.Start(t)
	intake := serve(t, e.NC, "m", func(req schemas.InferRequest, _ int) []*schemas.InferReply { return []*schemas.InferReply{ok(req)} })
	c := newClient(t, e.NC, client.WithInboxPrefix("_INBOX.svc.run1"))
	if _, err := c.Infer(within(t, 5*time.Second), "m", "a", "b"); err != nil {
		t.Fatal(err)
	}
	intake.mu.Lock()
	defer intake.mu.Unlock()
	if r := intake.msgs[0].Reply; !strings.HasPrefix(r, "_INBOX.svc.run1.") || strings.Count(r, ".") != 3 {
		t.Errorf("reply subject %q", r)
	}
}

// TestDirect runs against the real stack: JetStream-direct calls in both
// encodings, many in flight, and de-duplication by id.
func TestDirect(t *testing.T) {
	for _, enc := range []client.Encoding{client.JSON, client.Msgpack} {
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		c := newClient(t, nc, client.WithDirect(), client.WithEncoding(enc))
		ctx := within(t, 60*time.Second)
		var futures []*client.Future
		for i := range 40 {
			f, err := c.InferAsync(ctx, "tiny", client.Text{A: fmt.Sprintf("sentence %d", i), B: "another"})
			if err != nil {
				t.Fatal(err)
			}
			futures = append(futures, f)
		}
		ids := map[string]bool{}
		for _, f := range futures {
			r, err := f.Result()
			if err != nil {
				t.Fatalf("%s: %v", enc, err)
			}
			if r.ID != f.ID() || len(r.Probabilities) != 2 || r.BatchSize < 1 || r.Worker != "stack-worker" || !r.Synthetic {
				t.Fatalf("%s: reply %+v", enc, r)
			}
			ids[r.ID] = true
		}
		if len(ids) != 40 {
			t.Errorf("%s: %d distinct ids", enc, len(ids))
		}
	}
}

// TestDirectFailures: a full queue, a missing stream and a duplicate id,
// each as its sentinel.
func TestDirectFailures(t *testing.T) {
	e := natstest.Provisioned(t, broker.WithMaxQueue(2))
	c := newClient(t, e.NC, client.WithDirect())
	ctx := within(t, 10*time.Second)
	for i := range 2 {
		ack, err := c.Enqueue(ctx, "m", client.Text{A: "a"}, "", client.WithID(fmt.Sprint("q", i)))
		if err != nil || ack.Stream != schemas.InferStream || ack.Duplicate {
			t.Fatalf("enqueue %d: %+v, %v", i, ack, err)
		}
	}
	if ack, err := c.Enqueue(ctx, "m", client.Text{A: "a"}, "", client.WithID("q1")); err != nil || !ack.Duplicate {
		t.Errorf("enqueueing a queued id again: %+v, %v (want a duplicate PubAck)", ack, err)
	}
	if _, err := c.Infer(ctx, "m", "a", "b", client.WithID("q0")); !errors.Is(err, client.ErrDuplicate) {
		t.Errorf("a call with a queued id: %v", err)
	}
	if _, err := c.Infer(ctx, "m", "a", "b"); !errors.Is(err, client.ErrQueueFull) {
		t.Errorf("full queue: %v", err)
	}

	bare := natstest.Start(t) // nothing provisioned
	for _, opts := range [][]client.Option{{client.WithDirect()}, {client.WithDirect(), client.WithRetry(100 * time.Millisecond)}} {
		c := newClient(t, bare.NC, opts...)
		start := time.Now()
		_, err := c.Infer(within(t, 1500*time.Millisecond), "m", "a", "b")
		if !errors.Is(err, client.ErrUnavailable) || !errors.Is(err, jetstream.ErrNoStreamResponse) {
			t.Errorf("no stream (%d options): %v", len(opts), err)
		}
		if len(opts) == 2 && (c.Stats().Resends == 0 || time.Since(start) < time.Second) {
			t.Errorf("with retries: %+v after %v, want re-sends until the deadline", c.Stats(), time.Since(start))
		}
	}
}

// BenchmarkInfer measures a call's round trip through an embedded server to
// a responder that answers at once: the client's own cost plus loopback NATS.
func BenchmarkInfer(b *testing.B) {
	for _, enc := range []client.Encoding{client.JSON, client.Msgpack} {
		b.Run(enc.String(), func(b *testing.B) {
			e := natstest.Start(b)
			sub, err := e.NC.Subscribe(schemas.InferSubject("bench"), func(m *nats.Msg) {
				var req schemas.InferRequest
				enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
				schemas.Unmarshal(enc, m.Data, &req)
				data, _ := schemas.Marshal(enc, ok(req))
				out := &nats.Msg{Subject: m.Reply, Header: nats.Header{}, Data: data}
				out.Header.Set(schemas.HeaderContentType, enc.ContentType())
				e.NC.PublishMsg(out)
			})
			if err != nil {
				b.Fatal(err)
			}
			defer sub.Unsubscribe()
			nc, err := nats.Connect(e.Broker.ClientURL())
			if err != nil {
				b.Fatal(err)
			}
			defer nc.Close()
			c, err := client.New(nc, client.WithEncoding(enc))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := c.Infer(ctx, "bench", "The cat sat on the mat.", "A cat was sitting on the mat."); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
