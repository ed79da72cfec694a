package faults_test

import (
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/bertq/bertq/producer"
)

// TestWorkerSIGKILL kills a worker process with SIGKILL while it holds
// unacked requests, again and again under a steady load through the intake,
// starting a new process each time. The dead worker's requests come back
// after AckWait (2 s here) and the next worker answers them: nothing is lost,
// and a request answered twice was answered by the killed worker (reply out,
// ack not) and again by its successor.
func TestWorkerSIGKILL(t *testing.T) {
	kills := pick(10, 40)
	s := startSingle(t)
	cache := t.TempDir()
	tl := newTally(t, s.nc, producer.InboxRoot+">")
	start := time.Now()
	// Workers come and go; the load never stops. Generous timeouts: a request
	// held by a killed worker waits AckWait plus a process start.
	l := startLoad(t, connect(t, "faults-producer", s.url), producer.WithModel(model), producer.WithClients(16),
		producer.WithCycle(50), producer.WithTimeout(60*time.Second), producer.WithLinger(0))

	midBatch, heldAtKill := 0, 0
	for i := 1; i <= kills; i++ {
		id := fmt.Sprintf("kill-%d", i)
		p := workerProc(t, s.url, id, cache, "--ack-wait", "2s", "--max-deliver", "20")
		waitFor(t, 60*time.Second, id+" answering under load", func() bool { return tl.answeredBy(id) >= 20 })
		// Vary the moment of death across the batch cycle.
		time.Sleep(time.Duration(rand.IntN(500)) * time.Millisecond)
		// Kill while it holds requests: fetched, not yet acked.
		deadline := time.Now().Add(10 * time.Second)
		for consumerInfo(t, s.js).NumAckPending == 0 && time.Now().Before(deadline) {
		}
		p.signal(t, syscall.SIGKILL, 10*time.Second)
		// Only this worker ran: what is unacked now, it held when it died.
		if held := consumerInfo(t, s.js).NumAckPending; held > 0 {
			midBatch++
			heldAtKill += held
		}
	}
	last := workerProc(t, s.url, "kill-final", cache, "--ack-wait", "2s", "--max-deliver", "20")
	sum := l.finish(t, 120*time.Second)
	waitIdle(t, s.js, 30*time.Second)
	s.nc.Flush()
	time.Sleep(200 * time.Millisecond) // replies published before the last acks
	last.signal(t, syscall.SIGTERM, 30*time.Second)

	dups, sameWorker := tl.dups()
	t.Logf("FAULT worker-sigkill sent=%d answered=%d errors=%d duplicates=%d lost=%d late=%d kills=%d kills_mid_batch=%d held_at_kill=%d rounds=%d error_codes=%s elapsed=%.1fs",
		sum.Sent, sum.Answered, sum.Errors, dups, sum.Lost, sum.Late, kills, midBatch, heldAtKill, l.rounds, codes(sum.ErrorCodes), time.Since(start).Seconds())
	if sum.Lost != 0 || sum.Late != 0 || sum.Errors != 0 || sum.Answered != sum.Sent {
		t.Errorf("sent %d, answered %d, errors %d (%s), lost %d, late %d: want every request answered",
			sum.Sent, sum.Answered, sum.Errors, codes(sum.ErrorCodes), sum.Lost, sum.Late)
	}
	if tl.distinct() != sum.Sent {
		t.Errorf("replies name %d distinct ids, %d were sent", tl.distinct(), sum.Sent)
	}
	if len(sameWorker) > 0 {
		t.Errorf("%d ids answered twice by the same worker (not a redelivery after a kill), e.g. %s", len(sameWorker), sameWorker[0])
	}
	if midBatch == 0 {
		t.Errorf("no kill caught a worker holding requests: the test did not exercise redelivery")
	}
}
