package faults_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bertq/bertq/producer"
)

// TestWorkerSIGTERMDrain stops a worker process with SIGTERM under load, again
// and again, and restarts it. A drained worker finishes the batch in hand,
// answers and acks it, and exits 0: right after it exits the consumer holds
// nothing unacked (AckWait is 60 s here, so a request it dropped would still
// show as unacked), the next worker answers the rest, and since nothing needs
// redelivery nothing is answered twice.
func TestWorkerSIGTERMDrain(t *testing.T) {
	terms := pick(4, 15)
	s := startSingle(t)
	cache := t.TempDir()
	tl := newTally(t, s.nc, producer.InboxRoot+">")
	start := time.Now()
	l := startLoad(t, connect(t, "faults-producer", s.url), producer.WithModel(model), producer.WithClients(16),
		producer.WithCycle(50), producer.WithTimeout(60*time.Second), producer.WithLinger(0))

	inFlight, maxDrain := 0, time.Duration(0)
	for i := 1; i <= terms; i++ {
		id := fmt.Sprintf("drain-%d", i)
		p := workerProc(t, s.url, id, cache, "--ack-wait", "60s")
		waitFor(t, 60*time.Second, id+" answering under load", func() bool { return tl.answeredBy(id) >= 20 })
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		deadline := time.Now().Add(10 * time.Second)
		for consumerInfo(t, s.js).NumAckPending == 0 && time.Now().Before(deadline) {
		}
		held := consumerInfo(t, s.js).NumAckPending
		inFlight += held
		sent := time.Now()
		if code := p.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
			t.Fatalf("%s exited %d after SIGTERM, want 0:\n%s", id, code, tail(p.out.String(), 3000))
		}
		maxDrain = max(maxDrain, time.Since(sent))
		if !strings.Contains(p.out.String(), "worker drained") {
			t.Errorf("%s did not log its drain:\n%s", id, tail(p.out.String(), 2000))
		}
		// Only this worker ran: anything unacked now, it left behind.
		if info := consumerInfo(t, s.js); info.NumAckPending != 0 {
			t.Errorf("after %s drained (it held %d): %d requests unacked, want 0", id, held, info.NumAckPending)
		}
	}
	last := workerProc(t, s.url, "drain-final", cache, "--ack-wait", "60s")
	sum := l.finish(t, 120*time.Second)
	waitIdle(t, s.js, 30*time.Second)
	if code := last.signal(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("drain-final exited %d after SIGTERM", code)
	}
	info := consumerInfo(t, s.js)
	s.nc.Flush()
	time.Sleep(200 * time.Millisecond)

	dups, _ := tl.dups()
	t.Logf("FAULT worker-sigterm sent=%d answered=%d errors=%d duplicates=%d lost=%d late=%d sigterms=%d held_at_sigterm=%d max_drain=%s end_ack_pending=%d end_pending=%d rounds=%d elapsed=%.1fs",
		sum.Sent, sum.Answered, sum.Errors, dups, sum.Lost, sum.Late, terms, inFlight, maxDrain.Round(time.Millisecond),
		info.NumAckPending, info.NumPending, l.rounds, time.Since(start).Seconds())
	if sum.Lost != 0 || sum.Late != 0 || sum.Errors != 0 || sum.Answered != sum.Sent {
		t.Errorf("sent %d, answered %d, errors %d (%s), lost %d, late %d: want every request answered",
			sum.Sent, sum.Answered, sum.Errors, codes(sum.ErrorCodes), sum.Lost, sum.Late)
	}
	if dups != 0 {
		t.Errorf("%d duplicate replies: a drained worker must ack all it answered", dups)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("at the end: %d unacked, %d pending, want 0 and 0", info.NumAckPending, info.NumPending)
	}
	if inFlight == 0 {
		t.Errorf("no SIGTERM came while the worker held requests: the drain was not exercised")
	}
}
