package producer

import (
	"sync"
	"time"

	"github.com/bertq/bertq/schemas"
	"github.com/nats-io/nats.go"
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
	done  chan struct{} // closed when the first reply or the timeout resolves it
	again chan struct{} // with retries: an "unavailable" reply asks for a re-send
}

// tracker matches replies to requests by id and accumulates the summary.
type tracker struct {
	mu      sync.Mutex
	entries map[string]*entry
	current []string // Run: each client's outstanding id

	// parse, when set (collector), creates entries for ids first seen in a reply.
	parse func(id string) (*entry, bool)
	// onNoResponders is called (once per message) when a 503 status arrives.
	onNoResponders func()
	// retry: "unavailable" and "duplicate_id" replies leave a request pending.
	retry   bool
	resends int

	sent, answered, errored, lost, late, dups, unmatched, correct int
	resolved                                                      int
	codes                                                         map[string]int
	lat                                                           []float64
	batch                                                         map[int]int
	workers                                                       map[string]int
	synthetic                                                     bool
	firstAt, lastAt                                               time.Time // of answers
}

func newTracker(clients int) *tracker {
	return &tracker{
		entries: make(map[string]*entry),
		current: make([]string, clients),
		codes:   make(map[string]int),
		batch:   make(map[int]int),
		workers: make(map[string]int),
	}
}

// add registers a request about to be sent by client c.
func (t *tracker) add(c int, id string, label int) *entry {
	e := &entry{label: label, done: make(chan struct{}), again: make(chan struct{}, 1), sent: time.Now()}
	t.mu.Lock()
	t.entries[id] = e
	if c >= 0 {
		t.current[c] = id
	}
	t.sent++
	t.mu.Unlock()
	return e
}

// fail resolves a request whose send failed.
func (t *tracker) fail(id, code string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[id]; e != nil && e.state == pending {
		t.resolveLocked(e, errored)
		t.codes[code]++
	}
}

// noteResend counts a request sent again under WithRetry.
func (t *tracker) noteResend() {
	t.mu.Lock()
	t.resends++
	t.mu.Unlock()
}

// expire marks a request lost if nothing answered it.
func (t *tracker) expire(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e := t.entries[id]; e != nil && e.state == pending {
		t.resolveLocked(e, lost)
	}
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
	if e.done != nil {
		close(e.done)
	}
}

// handle takes one reply message; client is the client its inbox names, or -1.
func (t *tracker) handle(m *nats.Msg, client int, at time.Time) {
	if m.Header.Get("Status") == "503" {
		// No responders: the request went nowhere; the server says so at once.
		t.mu.Lock()
		if client >= 0 && client < len(t.current) {
			if e := t.entries[t.current[client]]; e != nil && e.state == pending {
				t.resolveLocked(e, errored)
				t.codes[CodeNoResponders]++
			}
		}
		t.mu.Unlock()
		if t.onNoResponders != nil {
			t.onNoResponders()
		}
		return
	}
	var rep schemas.InferReply
	code := ""
	enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
	if err := schemas.Unmarshal(enc, m.Data, &rep); err != nil {
		// A micro service error reply has an empty body and the code in headers.
		code = m.Header.Get(schemas.HeaderErrorCode)
		if code == "" {
			code = m.Header.Get("Nats-Service-Error-Code")
		}
		if code == "" {
			code = CodeBadReply
		}
	} else if rep.Error != nil {
		code = rep.Error.Code
		if code == "" {
			code = schemas.CodeInternal
		}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	id := rep.ID
	if id == "" && client >= 0 && client < len(t.current) {
		id = t.current[client]
	}
	e := t.entries[id]
	if e == nil && t.parse != nil && id != "" {
		if e2, ok := t.parse(id); ok {
			e = e2
			t.entries[id] = e
			t.sent++
		}
	}
	if e == nil {
		t.unmatched++
		return
	}
	switch e.state {
	case answered, errored, late:
		t.dups++
		return
	case lost:
		e.state = late
		t.late++
		return
	}
	if code != "" && t.retry && e.state == pending && e.again != nil {
		switch code {
		case schemas.CodeUnavailable:
			select {
			case e.again <- struct{}{}:
			default:
			}
			return
		case schemas.CodeDuplicate:
			return // an earlier copy is queued: its answer will come
		}
	}
	if code != "" {
		t.codes[code]++
		t.resolveLocked(e, errored)
		return
	}
	t.resolveLocked(e, answered)
	if t.firstAt.IsZero() {
		t.firstAt = at
	}
	t.lastAt = at
	t.lat = append(t.lat, float64(at.Sub(e.sent))/float64(time.Millisecond))
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
	s.Resends = t.resends
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
	s.LatencyMS = latencyOf(t.lat)
	if t.answered > 0 {
		a := float64(t.correct) / float64(t.answered)
		s.Accuracy = &a
	}
}
