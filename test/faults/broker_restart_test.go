package faults_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// restartInbox is where the backlog's replies go.
const restartInbox = "_INBOX.faults.restart"

// queued is one request as published.
type queued struct {
	sum  [32]byte // SHA-256 of the payload
	pair producer.Pair
}

// TestBrokerRestartBacklog queues a backlog in the file store with no worker
// running, restarts the broker on the same store and port, checks that the
// stream still holds every request byte for byte, then lets two workers
// answer: every request once, with the logits of a direct engine run of its
// pair, none lost, none mixed up. The broker stops in two ways: an embedded
// broker shut down (a restart), and a `bertq broker` process killed with
// SIGKILL right after the last PubAck (a crash).
func TestBrokerRestartBacklog(t *testing.T) {
	tm := loadTiny(t)
	pairs := producer.Sample()
	want := tm.expect(t, pairs)
	t.Run("shutdown", func(t *testing.T) { testRestart(t, tm, pairs, want, false) })
	t.Run("sigkill", func(t *testing.T) { testRestart(t, tm, pairs, want, true) })
}

// brokerUp is a broker that testRestart can stop and start again.
type brokerUp struct {
	url  string
	stop func() // shut down (embedded) or SIGKILL (process)
}

func testRestart(t *testing.T, tm *tinyModel, pairs []producer.Pair, want map[string][]float32, crash bool) {
	n := pick(10_000, 50_000)
	store := t.TempDir()
	listen := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	up := func() brokerUp {
		if crash {
			p := startProc(t, "broker", bertqBin(t), "broker", "--listen", listen, "--store", store, "--log-json")
			p.waitLog(t, "broker ready", 60*time.Second)
			return brokerUp{url: "nats://" + listen, stop: func() { p.signal(t, syscall.SIGKILL, 10*time.Second) }}
		}
		b, err := broker.Start(broker.WithListen(listen), broker.WithStoreDir(store))
		if err != nil {
			t.Fatalf("starting on %s: %v", listen, err)
		}
		var once sync.Once
		stop := func() { once.Do(func() { b.Shutdown(); b.WaitForShutdown() }) }
		t.Cleanup(stop)
		return brokerUp{url: b.ClientURL(), stop: stop}
	}
	start := time.Now()
	b := up()
	nc, err := nats.Connect(b.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js := newJS(t, nc)
	if !crash { // `bertq broker` provisions itself
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := broker.Provision(ctx, js); err != nil {
			t.Fatal(err)
		}
	}
	sent := publishBacklog(t, nc, n, pairs)
	b.stop() // at once: the last PubAck is all a publisher knows
	nc.Close()
	published := time.Since(start)

	// The same store and port: clients configured with the URL find it again.
	b = up()
	nc = connect(t, "faults-test", b.url)
	js = newJS(t, nc)
	intact := checkStream(t, js, sent)
	restarted := time.Since(start)

	tl := newTally(t, nc, restartInbox)
	workStart := time.Now()
	w1 := startWorker(t, connect(t, "w1", b.url), tm, worker.WithID("restart-w1"))
	w2 := startWorker(t, connect(t, "w2", b.url), tm, worker.WithID("restart-w2"))
	waitFor(t, 120*time.Second, fmt.Sprintf("replies to all %d requests", n), func() bool { return tl.distinct() >= n })
	work := time.Since(workStart)
	w1.stop(t)
	w2.stop(t)
	waitIdle(t, js, 10*time.Second)
	nc.Flush()
	time.Sleep(100 * time.Millisecond)

	answered, corrupted, failed := 0, 0, 0
	var example string
	for id, q := range sent {
		s := tl.get(id)
		switch {
		case s == nil:
		case s.code != "":
			failed++
			example = fmt.Sprintf("%s: %s", id, s.code)
		case s.rep.ID != id || s.rep.Model != model || !sameLogits(s.rep.Logits, want[pairKey(q.pair.A, q.pair.B)]) ||
			s.rep.LabelIndex != schemas.Argmax(want[pairKey(q.pair.A, q.pair.B)]):
			corrupted++
			example = fmt.Sprintf("%s: logits %v, want %v", id, s.rep.Logits, want[pairKey(q.pair.A, q.pair.B)])
		default:
			answered++
		}
	}
	dups, _ := tl.dups()
	lost := n - answered - corrupted - failed
	unknown := tl.bad + tl.distinct() - (n - lost)
	name := "broker-restart"
	if crash {
		name = "broker-sigkill"
	}
	t.Logf("FAULT %s sent=%d answered=%d errors=%d duplicates=%d lost=%d corrupted=%d intact_after_restart=%d unknown_replies=%d publish=%.1fs restart_and_check=%.1fs answer=%.1fs elapsed=%.1fs",
		name, n, answered, failed, dups, lost, corrupted, intact, unknown, published.Seconds(), (restarted - published).Seconds(), work.Seconds(), time.Since(start).Seconds())
	if answered != n || lost != 0 || corrupted != 0 || failed != 0 || dups != 0 || unknown != 0 {
		t.Errorf("%d answered correctly of %d: %d lost, %d wrong, %d errors, %d duplicates, %d unknown or undecodable (e.g. %s)",
			answered, n, lost, corrupted, failed, dups, unknown, example)
	}
}

// publishBacklog publishes n requests straight into the stream, alternating
// JSON and msgpack, with ids faults-<i>, and returns them by id.
func publishBacklog(t *testing.T, nc *nats.Conn, n int, pairs []producer.Pair) map[string]queued {
	t.Helper()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		t.Fatal(err)
	}
	sent := make(map[string]queued, n)
	futures := make([]jetstream.PubAckFuture, 0, n)
	for i := 0; i < n; i++ {
		p := pairs[i%len(pairs)]
		id := fmt.Sprintf("faults-%d", i)
		enc := schemas.Encoding(i % 2)
		data, err := schemas.Marshal(enc, &schemas.InferRequest{V: schemas.Version, ID: id, Model: model, A: p.A, B: p.B})
		if err != nil {
			t.Fatal(err)
		}
		m := nats.NewMsg(schemas.WorkSubject(model))
		m.Data = data
		m.Header.Set(schemas.HeaderContentType, enc.ContentType())
		m.Header.Set(schemas.HeaderReplyTo, restartInbox)
		m.Header.Set(schemas.HeaderMsgID, id)
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
		sent[id] = queued{sum: sha256.Sum256(data), pair: p}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(60 * time.Second):
		t.Fatal("PubAcks did not all arrive within 60 s")
	}
	for i, f := range futures {
		select {
		case err := <-f.Err():
			t.Fatalf("request %d refused: %v", i, err)
		case ack := <-f.Ok():
			if ack.Duplicate {
				t.Fatalf("request %d was taken for a duplicate", i)
			}
		}
	}
	return sent
}

// checkStream reads every message of the stream and checks it against what
// was published: same ids, each once, same payload hash, same reply subject.
// It returns how many matched.
func checkStream(t *testing.T, js jetstream.JetStream, sent map[string]queued) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, schemas.InferStream)
	if err != nil {
		t.Fatal(err)
	}
	st := s.CachedInfo().State
	if st.Msgs != uint64(len(sent)) {
		t.Fatalf("the stream holds %d requests after the restart, want %d", st.Msgs, len(sent))
	}
	var mu sync.Mutex
	found := map[string]bool{}
	bad := 0
	var example string
	var wg sync.WaitGroup
	const readers = 4
	for r := 0; r < readers; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := st.FirstSeq + uint64(r); seq <= st.LastSeq; seq += readers {
				m, err := s.GetMsg(ctx, seq)
				mu.Lock()
				switch {
				case err != nil:
					bad++
					example = fmt.Sprintf("seq %d: %v", seq, err)
				default:
					id := m.Header.Get(schemas.HeaderMsgID)
					q, ok := sent[id]
					if !ok || found[id] || sha256.Sum256(m.Data) != q.sum || m.Header.Get(schemas.HeaderReplyTo) != restartInbox {
						bad++
						example = fmt.Sprintf("seq %d, id %q: known %v, seen before %v", seq, id, ok, found[id])
					} else {
						found[id] = true
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if bad != 0 || len(found) != len(sent) {
		t.Fatalf("after the restart %d of %d requests intact, %d bad (e.g. %s)", len(found), len(sent), bad, example)
	}
	return len(found)
}
