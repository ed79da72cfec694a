package producer

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/client"
)

// Codes the producer itself assigns (beside the schemas codes in replies).
const (
	CodeNoResponders = "no_responders" // nothing listened on the subject
	CodeBadReply     = "bad_reply"     // a reply that does not decode
	CodePublish      = "publish_failed"
)

type state uint8

const (
	pending state = iota
	answered
	errored
	lost
	late // lost, then a reply came
)

type entry struct {
	state state
	sent  time.Time
	label int
	// strays are replies that came while the call's outcome was on its way
	// to the tracker (the client had ended the call already).
	strays int
}

// sample is one answered request, for the report.
type sample struct {
	at        time.Time
	latencyMS float64
}

// tracker matches outcomes to requests by id and accumulates the summary.
type tracker struct {
	mu      sync.Mutex
	entries map[string]*entry

	// parse, when set (collector), creates entries for ids first seen in a reply.
	parse func(id string) (*entry, bool)

	sent, answered, errored, lost, late, dups, unmatched, correct int
	resolved                                                      int
	codes                                                         map[string]int
	samples                                                       []sample
	batch                                                         map[int]int
	workers                                                       map[string]int
	synthetic                                                     bool
	firstAt, lastAt                                               time.Time // of answers
}

func newTracker() *tracker {
	return &tracker{
		entries: make(map[string]*entry),
		codes:   make(map[string]int),
		batch:   make(map[int]int),
		workers: make(map[string]int),
	}
}

// add registers a request about to be sent.
func (t *tracker) add(id string, label int) {
	e := &entry{label: label, sent: time.Now()}
	t.mu.Lock()
	t.entries[id] = e
	t.sent++
	t.mu.Unlock()
}

// errorCode names the failure of a call, for ErrorCodes.
func errorCode(err error) string {
	var ce *client.Error
	switch {
	case errors.As(err, &ce):
		return ce.Code
	case errors.Is(err, client.ErrNoResponders):
		return CodeNoResponders
	case errors.Is(err, client.ErrBadReply):
		return CodeBadReply
	}
	return CodePublish
}

// isLost reports whether a call ended without an answer before its deadline
// (or the run's end), rather than with an error. A service's own
// deadline_exceeded answer is an error reply, not a loss.
func isLost(err error) bool {
	var ce *client.Error
	if errors.As(err, &ce) {
		return false
	}
	return errors.Is(err, client.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}

// outcome records how the call for id ended: its reply, or its error.
func (t *tracker) outcome(id string, rep *client.Reply, err error, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e := t.entries[id]
	if e == nil || e.state != pending {
		return
	}
	switch {
	case err == nil:
		t.answerLocked(e, rep, at)
		t.dups += e.strays
	case !isLost(err):
		code := errorCode(err)
		t.codes[code]++
		t.resolveLocked(e, errored)
		t.dups += e.strays
	default:
		t.resolveLocked(e, lost)
		if e.strays > 0 { // it came after all, just too late
			e.state = late
			t.late++
			t.dups += e.strays - 1
		}
	}
}

// stray records a reply that no call waited for: by its id, a duplicate, a
// late answer, or one of no request of this run.
func (t *tracker) stray(rep *client.Reply, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var e *entry
	if rep != nil && rep.ID != "" {
		e = t.entries[rep.ID]
	}
	switch {
	case e == nil:
		t.unmatched++
	case e.state == pending:
		e.strays++
	case e.state == lost:
		e.state = late
		t.late++
	default:
		t.dups++
	}
}

// handle takes one reply message of a backlog (collector).
func (t *tracker) handle(m *nats.Msg, at time.Time) {
	rep, err := client.ParseReply(m)
	id := ""
	if rep != nil {
		id = rep.ID
	}
	t.mu.Lock()
	e := t.entries[id]
	if e == nil && t.parse != nil && id != "" {
		if e2, ok := t.parse(id); ok {
			e = e2
			t.entries[id] = e
			t.sent++
		}
	}
	pend := e != nil && e.state == pending
	t.mu.Unlock()
	if !pend {
		t.stray(rep, at)
		return
	}
	t.outcome(id, rep, err, at)
}

func (t *tracker) resolveLocked(e *entry, s state) {
	e.state = s
	switch s {
	case answered:
		t.answered++
	case errored:
		t.errored++
	case lost:
		t.lost++
	}
	t.resolved++
}

func (t *tracker) answerLocked(e *entry, rep *client.Reply, at time.Time) {
	t.resolveLocked(e, answered)
	if t.firstAt.IsZero() {
		t.firstAt = at
	}
	t.lastAt = at
	t.samples = append(t.samples, sample{at: at, latencyMS: float64(at.Sub(e.sent)) / float64(time.Millisecond)})
	if rep.LabelIndex == e.label {
		t.correct++
	}
	if rep.BatchSize > 0 {
		t.batch[rep.BatchSize]++
	}
	if rep.Worker != "" && len(t.workers) < 1000 {
		t.workers[rep.Worker]++
	}
	if rep.Synthetic {
		t.synthetic = true
	}
}

// counts is a snapshot for progress lines.
func (t *tracker) counts() (answered, errored, lost, resolved int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.answered, t.errored, t.lost, t.resolved
}

// summary fills the counters of s.
func (t *tracker) summary(s *Summary, wall time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s.Sent, s.Answered, s.Errors, s.Lost = t.sent, t.answered, t.errored, t.lost
	s.Late, s.Duplicates, s.Unmatched, s.Correct = t.late, t.dups, t.unmatched, t.correct
	s.ErrorCodes = make(map[string]int, len(t.codes))
	for c, n := range t.codes {
		s.ErrorCodes[c] = n
	}
	s.BatchSizes = make(map[int]int, len(t.batch))
	for b, n := range t.batch {
		s.BatchSizes[b] = n
	}
	if len(t.workers) > 0 {
		s.Workers = make(map[string]int, len(t.workers))
		for w, n := range t.workers {
			s.Workers[w] = n
		}
	}
	s.Synthetic = t.synthetic
	s.WallS = wall.Seconds()
	if s.WallS > 0 {
		s.ThroughputPerS = float64(t.answered) / s.WallS
	}
	lat := make([]float64, len(t.samples))
	for i, x := range t.samples {
		lat[i] = x.latencyMS
	}
	s.LatencyMS = latencyOf(lat)
	if t.answered > 0 {
		a := float64(t.correct) / float64(t.answered)
		s.Accuracy = &a
	}
	s.samples = append([]sample(nil), t.samples...)
}
