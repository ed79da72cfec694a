package producer

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/schemas"
)

// flakyIntake answers like an intake on a cluster that loses a node: the first
// copy of every request vanishes (the intake died holding it), the second is
// refused as "unavailable" (the queue elects a leader), the third is answered
// "duplicate_id" (an earlier copy made it into the queue after all) and then
// really answered.
func flakyIntake(t *testing.T, nc *nats.Conn, model string, attempts map[string]int, mu *sync.Mutex) {
	sub, err := nc.Subscribe(schemas.InferSubject(model), func(m *nats.Msg) {
		req, enc := decodeRequest(t, m)
		mu.Lock()
		attempts[req.ID]++
		n := attempts[req.ID]
		mu.Unlock()
		switch n {
		case 1:
		case 2:
			sendReply(t, nc, m.Reply, enc, &schemas.InferReply{V: 1, ID: req.ID, Error: schemas.Errorf(schemas.CodeUnavailable, "electing a leader")})
		case 3:
			sendReply(t, nc, m.Reply, enc, &schemas.InferReply{V: 1, ID: req.ID, Error: schemas.Errorf(schemas.CodeDuplicate, "queued moments ago")})
			time.Sleep(20 * time.Millisecond)
			sendReply(t, nc, m.Reply, enc, &schemas.InferReply{V: 1, ID: req.ID, Model: model, LabelIndex: 1, BatchSize: 1})
		default:
			sendReply(t, nc, m.Reply, enc, &schemas.InferReply{V: 1, ID: req.ID, Error: schemas.Errorf(schemas.CodeDuplicate, "queued moments ago")})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
}

func TestRunRetriesLoseNothing(t *testing.T) {
	nc, _ := startNATS(t)
	var mu sync.Mutex
	attempts := map[string]int{}
	flakyIntake(t, nc, "flaky", attempts, &mu)
	const clients, cycle = 3, 4
	s, err := Run(context.Background(), nc, WithModel("flaky"), WithClients(clients), WithCycle(cycle), WithPairs(testPairs(5)),
		WithTimeout(10*time.Second), WithRetry(200*time.Millisecond), WithLinger(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != clients*cycle || s.Answered != s.Sent || s.Lost != 0 || s.Errors != 0 {
		t.Fatalf("with retries: %+v", s)
	}
	if s.Resends < 2*s.Sent {
		t.Errorf("re-sent %d times for %d requests that each needed 2 re-sends", s.Resends, s.Sent)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(attempts) != s.Sent {
		t.Errorf("%d distinct ids reached the intake for %d requests: re-sends must keep the id", len(attempts), s.Sent)
	}
}

func TestRunWithoutRetriesCountsLosses(t *testing.T) {
	nc, _ := startNATS(t)
	var mu sync.Mutex
	flakyIntake(t, nc, "flaky", map[string]int{}, &mu)
	s, err := Run(context.Background(), nc, WithModel("flaky"), WithClients(2), WithCycle(2), WithPairs(testPairs(3)),
		WithTimeout(300*time.Millisecond), WithLinger(0))
	if err != nil {
		t.Fatal(err)
	}
	if s.Sent != 4 || s.Lost != 4 || s.Resends != 0 {
		t.Fatalf("without retries every first copy is lost: %+v", s)
	}
}
