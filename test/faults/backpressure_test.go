package faults_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// TestQueueFullBackpressure fills a queue of 50 with no worker running, from
// two fast publishers at once: one through the intake (request with an
// inbox, no wait), one straight into JetStream (PubAck). Past the limit
// nothing is dropped in silence: the intake answers queue_full, JetStream
// refuses the publish with "maximum messages exceeded". The stream holds
// exactly what was accepted; once a worker starts, each accepted request is
// answered once and accepted + refused = sent.
func TestQueueFullBackpressure(t *testing.T) {
	const maxQueue = 50
	n := pick(200, 5000) // per path
	tm := loadTiny(t)
	s := startSingle(t, broker.WithMaxQueue(maxQueue))
	tl := newTally(t, s.nc, "_INBOX.faults.bp.>")
	pairs := producer.Sample()
	start := time.Now()

	request := func(id string, p producer.Pair) []byte {
		data, err := schemas.Marshal(schemas.JSON, &schemas.InferRequest{V: schemas.Version, ID: id, Model: model, A: p.A, B: p.B})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	intakeIDs := make([]string, n)
	var mu sync.Mutex
	directOK := map[string]bool{}
	directRefused, directOther := 0, 0
	var otherErr error
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the intake publisher: fire and forget, the reply says
		defer wg.Done()
		nc := connect(t, "faults-intake-client", s.url)
		for i := range n {
			id := fmt.Sprintf("bp-i-%d", i)
			intakeIDs[i] = id
			if err := nc.PublishMsg(&nats.Msg{Subject: schemas.InferSubject(model), Reply: "_INBOX.faults.bp.i", Data: request(id, pairs[i%len(pairs)])}); err != nil {
				t.Error(err)
				return
			}
		}
		nc.Flush()
	}()
	const directClients = 8
	for c := range directClients {
		wg.Add(1)
		go func() { // the JetStream publishers
			defer wg.Done()
			js := newJS(t, connect(t, "faults-js-client", s.url))
			for i := c; i < n; i += directClients {
				id := fmt.Sprintf("bp-d-%d", i)
				m := nats.NewMsg(schemas.WorkSubject(model))
				m.Data = request(id, pairs[i%len(pairs)])
				m.Header.Set(schemas.HeaderMsgID, id)
				m.Header.Set(schemas.HeaderReplyTo, "_INBOX.faults.bp.d")
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := js.PublishMsg(ctx, m)
				cancel()
				var apiErr *jetstream.APIError
				mu.Lock()
				switch {
				case err == nil:
					directOK[id] = true
				case errors.As(err, &apiErr) && strings.Contains(apiErr.Description, "maximum messages exceeded"):
					directRefused++
				default:
					directOther++
					otherErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if directOther > 0 {
		t.Fatalf("%d JetStream publishes failed otherwise than queue full, e.g. %v", directOther, otherErr)
	}
	// Nothing consumes: the queue holds exactly its limit, and every intake
	// request beyond it is told so.
	intakeAccepted := maxQueue - len(directOK)
	waitFor(t, 30*time.Second, "the intake's queue_full replies", func() bool { return tl.distinct() >= n-intakeAccepted })
	if got := streamMsgs(t, s.js); got != maxQueue {
		t.Fatalf("the queue holds %d requests, want its limit %d", got, maxQueue)
	}
	intakeRefused, other := 0, ""
	for _, id := range intakeIDs {
		if r := tl.get(id); r != nil {
			if r.code == schemas.CodeQueueFull && strings.Contains(r.rep.Error.Message, "queue full") {
				intakeRefused++
			} else {
				other = fmt.Sprintf("%s: %+v", id, r.rep)
			}
		}
	}
	if other != "" || intakeRefused != n-intakeAccepted {
		t.Fatalf("intake: %d queue_full replies, want %d; other reply %s", intakeRefused, n-intakeAccepted, other)
	}
	refusedAt := time.Since(start)

	w := startWorker(t, connect(t, "w1", s.url), tm, worker.WithID("bp-w1"))
	waitFor(t, 60*time.Second, "answers to every accepted request", func() bool { return tl.distinct() >= n+len(directOK) })
	workerAnswered := w.w.Stats().Answered
	// With room again, a request is taken and answered.
	resp, err := s.nc.Request(schemas.InferSubject(model), request("bp-after", pairs[0]), 10*time.Second)
	if err != nil || resp.Header.Get(schemas.HeaderErrorCode) != "" {
		t.Errorf("a request after the queue drained: %v %s", err, resp.Data)
	}
	w.stop(t)
	waitIdle(t, s.js, 10*time.Second)
	s.nc.Flush()
	time.Sleep(100 * time.Millisecond)

	answered, wrong := 0, ""
	for _, id := range intakeIDs {
		if r := tl.get(id); r != nil && r.code == "" {
			answered++
		}
	}
	for i := range n {
		id := fmt.Sprintf("bp-d-%d", i)
		r := tl.get(id)
		switch {
		case directOK[id] && r != nil && r.code == "":
			answered++
		case directOK[id]:
			wrong = fmt.Sprintf("accepted %s: reply %+v", id, r)
		case r != nil:
			wrong = fmt.Sprintf("refused %s was answered: %+v", id, r.rep)
		}
	}
	dups, _ := tl.dups()
	sent, accepted, refused := 2*n, maxQueue, intakeRefused+directRefused
	lost := accepted - answered
	t.Logf("FAULT queue-full sent=%d accepted=%d refused=%d (intake_queue_full=%d direct_max_msgs=%d) answered=%d duplicates=%d lost=%d stream_at_limit=%d refusals_in=%.1fs elapsed=%.1fs",
		sent, accepted, refused, intakeRefused, directRefused, answered, dups, lost, maxQueue, refusedAt.Seconds(), time.Since(start).Seconds())
	if accepted+refused != sent || answered != accepted || dups != 0 || wrong != "" || workerAnswered != uint64(accepted) {
		t.Errorf("sent %d = accepted %d + refused %d? answered %d (worker %d), duplicates %d; %s",
			sent, accepted, refused, answered, workerAnswered, dups, wrong)
	}
}
