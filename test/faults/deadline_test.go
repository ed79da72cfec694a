package faults_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// TestExpiredBacklog queues requests through the intake with a deadline half
// a second ahead while no worker runs, and lets the deadline pass. The worker
// that starts then answers every one deadline_exceeded without running the
// model (no batch, no compute), and still serves fresh requests afterwards.
func TestExpiredBacklog(t *testing.T) {
	k := pick(200, 5000)
	tm := loadTiny(t)
	s := startSingle(t)
	tl := newTally(t, s.nc, "_INBOX.faults.dl.>")
	pairs := producer.Sample()
	start := time.Now()
	deadline := start.Add(time.Duration(pick(500, 3000)) * time.Millisecond)
	for i := range k {
		p := pairs[i%len(pairs)]
		data, err := schemas.Marshal(schemas.Encoding(i%2), &schemas.InferRequest{
			V: schemas.Version, ID: fmt.Sprintf("dl-%d", i), Model: model, A: p.A, B: p.B, Deadline: deadline.UTC()})
		if err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: schemas.InferSubject(model), Reply: "_INBOX.faults.dl.r", Data: data, Header: nats.Header{}}
		m.Header.Set(schemas.HeaderContentType, schemas.Encoding(i%2).ContentType())
		if err := s.nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	for q := streamMsgs(t, s.js); q != uint64(k); q = streamMsgs(t, s.js) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("%d of %d requests queued after 30 s; %d replies (e.g. dl-0: %+v)", q, k, tl.distinct(), tl.get("dl-0"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	queuedBy := time.Since(start)
	time.Sleep(time.Until(deadline) + 100*time.Millisecond)

	begin := time.Now()
	w := startWorker(t, connect(t, "w1", s.url), tm, worker.WithID("dl-w1"))
	waitFor(t, 60*time.Second, "an answer to every expired request", func() bool { return tl.distinct() >= k })
	took := time.Since(begin)
	st := w.w.Stats()
	expired, other := 0, ""
	for i := range k {
		id := fmt.Sprintf("dl-%d", i)
		if r := tl.get(id); r != nil && r.code == schemas.CodeDeadline {
			expired++
		} else if r != nil {
			other = fmt.Sprintf("%s: %+v", id, r.rep)
		}
	}
	// A fresh request is still served.
	data, _ := schemas.Marshal(schemas.JSON, &schemas.InferRequest{ID: "dl-fresh", A: pairs[0].A, B: pairs[0].B, Deadline: time.Now().Add(time.Minute)})
	resp, err := s.nc.Request(schemas.InferSubject(model), data, 10*time.Second)
	if err != nil || resp.Header.Get(schemas.HeaderErrorCode) != "" {
		t.Errorf("a fresh request after the expired backlog: %v %v", err, resp)
	}
	after := w.w.Stats()
	w.stop(t)
	waitIdle(t, s.js, 10*time.Second)
	dups, _ := tl.dups()
	t.Logf("FAULT expired-backlog sent=%d answered_deadline_exceeded=%d other=%d duplicates=%d lost=%d batches_run=%d answered_with_prediction=%d queued_in=%.2fs answered_in=%.2fs then_fresh_batches=%d",
		k, expired, tl.distinct()-expired, dups, k-tl.distinct(), st.Batches, st.Answered, queuedBy.Seconds(), took.Seconds(), after.Batches)
	if expired != k || other != "" || dups != 0 {
		t.Errorf("%d of %d answered deadline_exceeded, %d duplicates; other: %s", expired, k, dups, other)
	}
	if st.Batches != 0 || st.Answered != 0 || st.RealSlots != 0 || st.Errors[schemas.CodeDeadline] != uint64(k) {
		t.Errorf("the model ran for expired requests: %+v", st)
	}
	if after.Batches != 1 || after.Answered != 1 {
		t.Errorf("after a fresh request: %d batches, %d answered, want 1 and 1", after.Batches, after.Answered)
	}
}
