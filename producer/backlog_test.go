package producer

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// TestBacklogReplayAfterDowntime publishes a backlog while no worker runs,
// restarts the server on the same store, then collects from a separate
// collector while a worker starts: every request is answered.
func TestBacklogReplayAfterDowntime(t *testing.T) {
	store := t.TempDir()
	start := func() (*broker.Broker, *nats.Conn, jetstream.JetStream) {
		b, err := broker.Start(broker.WithListen("127.0.0.1:-1"), broker.WithStoreDir(store))
		if err != nil {
			t.Fatal(err)
		}
		nc, err := nats.Connect(b.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		js, _ := jetstream.New(nc)
		return b, nc, js
	}
	b, nc, js := start()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, js); err != nil {
		t.Fatal(err)
	}
	const model, n = "mrpc", 25
	pairs := Sample()
	r, err := Backlog(ctx, nc, n, WithModel(model), WithEncoding(schemas.Msgpack))
	if err != nil {
		t.Fatal(err)
	}
	if r.Published != n || r.Inbox != BacklogInbox(r.RunID) || !strings.HasPrefix(r.FirstID, r.RunID+"-0-") {
		t.Fatalf("receipt %+v", r)
	}
	if got, err := ParseBacklogRunID(r.RunID); err != nil || got != n {
		t.Fatalf("run id %q parses to %d, %v", r.RunID, got, err)
	}
	nc.Close()
	b.Shutdown()
	b.WaitForShutdown()

	b, nc, js = start()
	defer func() { nc.Close(); b.Shutdown(); b.WaitForShutdown() }()
	st, err := js.Stream(ctx, schemas.InferStream)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := st.CachedInfo().State.Msgs; msgs != n {
		t.Fatalf("stream holds %d requests after the restart, want %d", msgs, n)
	}
	// A collector in another connection, as `bertq producer --collect` would be.
	nc2, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	c, err := StartCollect(nc2, r.RunID, WithModel(model), WithTimeout(15*time.Second), WithLinger(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	fakeWorker(t, nc, js, model, pairs, nil)
	s, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != n || s.Answered != n || s.Lost != 0 || s.Errors != 0 || s.Duplicates != 0 || s.Correct != n || s.Mode != "collect" {
		t.Fatalf("summary %+v", s)
	}
	if s.LatencyMS.P50 <= 0 || s.BatchSizes[2] != n {
		t.Fatalf("latency %+v batches %v", s.LatencyMS, s.BatchSizes)
	}
}

// TestBacklogWait subscribes before publishing (`--backlog N --wait`).
func TestBacklogWait(t *testing.T) {
	nc, js := startNATS(t)
	const model, n = "m2", 10
	pairs := testPairs(3)
	fakeWorker(t, nc, js, model, pairs, nil)
	run := BacklogRunID(n)
	c, err := StartCollect(nc, run, WithTimeout(10*time.Second), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Backlog(context.Background(), nc, n, WithModel(model), WithPairs(pairs), WithRunID(run)); err != nil {
		t.Fatal(err)
	}
	s, err := c.Wait(context.Background())
	if err != nil || s.Answered != n || s.Correct != n || s.Lost != 0 {
		t.Fatalf("summary %+v, %v", s, err)
	}
	if _, err := Backlog(context.Background(), nc, n+1, WithModel(model), WithRunID(run)); !errors.Is(err, ErrOptions) {
		t.Fatalf("count mismatch: %v", err)
	}
}

func TestCollectTimeout(t *testing.T) {
	nc, _ := startNATS(t)
	run := BacklogRunID(7)
	// A stray reply for another run and a reply with a foreign id count as unmatched.
	c, err := StartCollect(nc, run, WithTimeout(300*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	sendReply(t, nc, BacklogInbox(run), schemas.JSON, &schemas.InferReply{ID: "someone-else"})
	sendReply(t, nc, BacklogInbox(run), schemas.JSON, &schemas.InferReply{ID: run + "-7-0-0"}) // seq out of range
	s, err := c.Wait(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 7 || s.Lost != 7 || s.Answered != 0 || s.Unmatched != 2 || s.Accuracy != nil {
		t.Fatalf("summary %+v", s)
	}
}

func TestBacklogNoStream(t *testing.T) {
	nc, js := startNATS(t)
	if err := js.DeleteStream(context.Background(), schemas.InferStream); err != nil {
		t.Fatal(err)
	}
	_, err := Backlog(context.Background(), nc, 3, WithModel("m"), WithTimeout(5*time.Second))
	if !errors.Is(err, ErrPublish) || !strings.Contains(err.Error(), "no stream captures") {
		t.Fatalf("err = %v", err)
	}
}

func TestParseBacklogRunID(t *testing.T) {
	for _, bad := range []string{"", "abc", "abcdefghij", "abcdefghij-", "abcdefghij-0", "abcdefghij-01", "ABCDEFGHIJ-5", "abcdefghi-5", "abcdefghij-5-6", "abcdefghij--5"} {
		if _, err := ParseBacklogRunID(bad); !errors.Is(err, ErrRunID) {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
	if n, err := ParseBacklogRunID("abcdefghi9-128"); err != nil || n != 128 {
		t.Errorf("good id: %d, %v", n, err)
	}
	id := BacklogRunID(5)
	if n, err := ParseBacklogRunID(id); err != nil || n != 5 {
		t.Errorf("%s: %d, %v", id, n, err)
	}
	sent := time.UnixMilli(1_700_000_000_123)
	e, ok := parseBacklogID(id, 5, backlogID(id, 4, 1, sent))
	if !ok || e.label != 1 || !e.sent.Equal(sent) {
		t.Errorf("parseBacklogID = %+v, %v", e, ok)
	}
}
