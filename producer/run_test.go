package producer

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/schemas"
	"github.com/nats-io/nats.go"
)

func testPairs(n int) []Pair {
	p := make([]Pair, n)
	for i := range p {
		p[i] = Pair{Label: i % 2, A: fmt.Sprintf("sentence a %d", i), B: fmt.Sprintf("sentence b %d", i), Line: i + 2}
	}
	return p
}

// TestRunSummary drives a scripted intake: by sequence number it drops a
// request (answering it late), fails, answers wrongly, answers twice, and
// checks every counter of the summary.
func TestRunSummary(t *testing.T) {
	for _, enc := range []schemas.Encoding{schemas.JSON, schemas.Msgpack} {
		t.Run(enc.String(), func(t *testing.T) { testRunSummary(t, enc) })
	}
}

func testRunSummary(t *testing.T, wantEnc schemas.Encoding) {
	nc, _ := startNATS(t)
	const model, clients, cycle = "mrpc", 4, 10
	pairs := testPairs(7)
	lab := labels(pairs)
	var mu sync.Mutex
	ids := map[string]bool{}
	sub, err := nc.Subscribe(schemas.InferSubject(model), func(m *nats.Msg) {
		req, enc := decodeRequest(t, m)
		if enc != wantEnc || m.Header.Get(schemas.HeaderContentType) != wantEnc.ContentType() {
			t.Errorf("request encoding %s, want %s", enc, wantEnc)
		}
		if req.Deadline.IsZero() || req.V != schemas.Version || req.Model != model {
			t.Errorf("request %+v lacks deadline, version or model", req)
		}
		mu.Lock()
		if ids[req.ID] {
			t.Errorf("request id %s sent twice", req.ID)
		}
		ids[req.ID] = true
		mu.Unlock()
		var c, s int
		if _, err := fmt.Sscanf(req.ID[strings.Index(req.ID, "-")+1:], "%d-%d", &c, &s); err != nil {
			t.Errorf("request id %q: %v", req.ID, err)
		}
		rep := &schemas.InferReply{V: 1, ID: req.ID, Model: model, LabelIndex: lab[req.A+"\x00"+req.B], BatchSize: s%4 + 1, Synthetic: true, Worker: "w1"}
		switch {
		case c == 0 && s == 3: // lost: answered after the client gave up
			go func() { time.Sleep(400 * time.Millisecond); sendReply(t, nc, m.Reply, enc, rep) }()
			return
		case s == 5:
			rep = &schemas.InferReply{V: 1, ID: req.ID, Error: schemas.Errorf(schemas.CodeQueueFull, "full")}
		case s == 2:
			rep.LabelIndex = 1 - rep.LabelIndex
		case s == 7:
			sendReply(t, nc, m.Reply, enc, rep)
		case s == 8 && c == 1: // an error without an id: attributed by the inbox
			rep = &schemas.InferReply{V: 1, Error: schemas.Errorf(schemas.CodeInternal, "boom")}
		case s == 9:
			time.Sleep(20 * time.Millisecond)
		}
		sendReply(t, nc, m.Reply, enc, rep)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	var progress strings.Builder
	var pmu sync.Mutex
	s, err := Run(context.Background(), nc, WithModel(model), WithClients(clients), WithCycle(cycle), WithPairs(pairs),
		WithTimeout(200*time.Millisecond), WithLinger(time.Second), WithEncoding(wantEnc),
		WithProgress(lockedWriter{&pmu, &progress}), withProgressEvery(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 40 || s.Lost != 1 || s.Late != 1 || s.Errors != 5 || s.Answered != 34 || s.Duplicates != 4 || s.Unmatched != 0 {
		t.Errorf("counts: %+v", s)
	}
	if s.ErrorCodes[schemas.CodeQueueFull] != 4 || s.ErrorCodes[schemas.CodeInternal] != 1 {
		t.Errorf("error codes %v", s.ErrorCodes)
	}
	// Wrong answers at s == 2, one per client.
	if s.Correct != 30 || s.Accuracy == nil || *s.Accuracy != 30.0/34 {
		t.Errorf("correct %d accuracy %v", s.Correct, s.Accuracy)
	}
	// Answered, by seq: 0,4,8 → 1 (client 1's seq 8 failed); 1,9 → 2; 2,6 → 3; 3,7 → 4 (client 0's seq 3 lost).
	want := map[int]int{1: 11, 2: 8, 3: 8, 4: 7}
	if fmt.Sprint(s.BatchSizes) != fmt.Sprint(want) {
		t.Errorf("batch sizes %v, want %v", s.BatchSizes, want)
	}
	if !s.Synthetic || s.Workers["w1"] != 34 || s.Mode != "request" || s.Encoding != wantEnc.String() {
		t.Errorf("summary %+v", s)
	}
	l := s.LatencyMS
	if !(l.P50 <= l.P90 && l.P90 <= l.P95 && l.P95 <= l.P99 && l.P99 <= l.Max && l.Mean > 0 && l.Max >= 20) {
		t.Errorf("latency %+v", l)
	}
	if s.ThroughputPerS <= 0 || s.WallS <= 0 {
		t.Errorf("throughput %v wall %v", s.ThroughputPerS, s.WallS)
	}
	pmu.Lock()
	if !strings.Contains(progress.String(), "answered") {
		t.Errorf("no progress lines: %q", progress.String())
	}
	pmu.Unlock()
	var out strings.Builder
	s.Format(&out)
	for _, w := range []string{"sent 40", "duplicates 4", "queue_full×4", "accuracy 88.2%", "synthetic", "1:11 2:8 3:8 4:7"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("summary text lacks %q:\n%s", w, out.String())
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestRunNoIntake(t *testing.T) {
	nc, _ := startNATS(t)
	start := time.Now()
	s, err := Run(context.Background(), nc, WithModel("nobody"), WithClients(3), WithCycle(50), WithTimeout(5*time.Second))
	if !errors.Is(err, ErrNoIntake) {
		t.Fatalf("err = %v, want ErrNoIntake", err)
	}
	if s == nil || s.ErrorCodes[CodeNoResponders] == 0 || s.Sent >= 150 {
		t.Fatalf("summary %+v", s)
	}
	if time.Since(start) > 4*time.Second {
		t.Fatal("waited for the timeout instead of failing fast")
	}
}

func TestRunOptions(t *testing.T) {
	for _, opts := range [][]Option{
		{},
		{WithModel("bad.name")},
		{WithModel("m"), WithClients(0)},
		{WithModel("m"), WithCycle(0)},
		{WithModel("m"), WithTimeout(0)},
		{WithModel("m"), WithPairs([]Pair{})},
		{WithModel("m"), WithRunID("UPPER")},
	} {
		if _, err := Run(context.Background(), nil, opts...); !errors.Is(err, ErrOptions) {
			t.Errorf("%d options: err = %v, want ErrOptions", len(opts), err)
		}
	}
}

func TestRunDirect(t *testing.T) {
	nc, js := startNATS(t)
	const model = "direct-m"
	pairs := testPairs(5)
	var mu sync.Mutex
	msgIDs := map[string]bool{}
	fakeWorker(t, nc, js, model, pairs, func(m *nats.Msg) {
		req, _ := decodeRequest(t, m)
		if m.Header.Get(schemas.HeaderMsgID) != req.ID {
			t.Errorf("Nats-Msg-Id %q, request id %q", m.Header.Get(schemas.HeaderMsgID), req.ID)
		}
		if !strings.HasPrefix(m.Header.Get(schemas.HeaderReplyTo), InboxRoot) {
			t.Errorf("reply to %q", m.Header.Get(schemas.HeaderReplyTo))
		}
		mu.Lock()
		msgIDs[req.ID] = true
		mu.Unlock()
	})
	s, err := Run(context.Background(), nc, WithModel(model), WithClients(3), WithCycle(5), WithPairs(pairs),
		WithDirect(true), WithEncoding(schemas.Msgpack), WithTimeout(5*time.Second), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 15 || s.Answered != 15 || s.Lost != 0 || s.Errors != 0 || s.Correct != 15 || s.Mode != "direct" || s.Synthetic {
		t.Fatalf("summary %+v", s)
	}
	if len(msgIDs) != 15 {
		t.Fatalf("worker saw %d distinct ids", len(msgIDs))
	}
}

func TestRunDirectNoStream(t *testing.T) {
	nc, js := startNATS(t)
	// The stream captures every model's work subject, so remove it.
	if err := js.DeleteStream(context.Background(), schemas.InferStream); err != nil {
		t.Fatal(err)
	}
	_, err := Run(context.Background(), nc, WithModel("m"), WithClients(2), WithCycle(3), WithDirect(true), WithTimeout(2*time.Second))
	if !errors.Is(err, ErrNoIntake) || !strings.Contains(err.Error(), "no stream captures") {
		t.Fatalf("err = %v", err)
	}
}

func TestRunCancel(t *testing.T) {
	nc, _ := startNATS(t)
	// An intake that never answers: the run ends by cancellation.
	sub, _ := nc.Subscribe(schemas.InferSubject("slow"), func(*nats.Msg) {})
	defer sub.Unsubscribe()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	s, err := Run(ctx, nc, WithModel("slow"), WithClients(2), WithCycle(100), WithTimeout(time.Minute))
	if !errors.Is(err, context.DeadlineExceeded) || s == nil || s.Lost != 2 || s.Sent != 2 {
		t.Fatalf("err = %v, summary %+v", err, s)
	}
}

// TestRunViaIntake goes through the broker's intake (bert.infer.<model>) to
// a worker on the stream, and gets unknown_model for a model not stored.
func TestRunViaIntake(t *testing.T) {
	nc, js := startNATS(t)
	in, err := broker.StartIntake(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	const model = "via-intake"
	obs, err := js.ObjectStore(context.Background(), schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutString(context.Background(), model, "stand-in artifact"); err != nil {
		t.Fatal(err)
	}
	pairs := testPairs(4)
	fakeWorker(t, nc, js, model, pairs, func(m *nats.Msg) {
		if m.Header.Get(schemas.HeaderReplyTo) == "" || m.Header.Get(schemas.HeaderEnqueued) == "" {
			t.Errorf("intake headers missing: %v", m.Header)
		}
	})
	s, err := Run(context.Background(), nc, WithModel(model), WithClients(4), WithCycle(5), WithPairs(pairs), WithTimeout(10*time.Second), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 20 || s.Answered != 20 || s.Correct != 20 || s.Errors != 0 {
		t.Fatalf("summary %+v", s)
	}
	s, err = Run(context.Background(), nc, WithModel("absent"), WithClients(2), WithCycle(3), WithTimeout(10*time.Second), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 6 || s.Errors != 6 || s.ErrorCodes[schemas.CodeUnknownModel] != 6 {
		t.Fatalf("summary %+v", s)
	}
}
