package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/client"
	"github.com/bertq/bertq/schemas"
)

// BacklogInbox is the subject a backlog's replies go to (on a connection
// without a custom inbox prefix; the receipt names the one used).
func BacklogInbox(runID string) string { return InboxPrefix(runID) + "b" }

// BacklogRunID returns a fresh run id for a backlog of n requests:
// <10 of [a-z0-9]>-<n>.
func BacklogRunID(n int) string { return fmt.Sprintf("%s-%d", newRunID(), n) }

// ParseBacklogRunID returns the request count a backlog run id carries.
func ParseBacklogRunID(runID string) (int, error) {
	base, count, ok := strings.Cut(runID, "-")
	n, err := strconv.Atoi(count)
	if !ok || !validRunBase(base) || err != nil || n < 1 || strconv.Itoa(n) != count {
		return 0, fmt.Errorf("%w: %q (want <10 of [a-z0-9]>-<count>, as printed by --backlog)", ErrRunID, schemas.Clip(runID, 40))
	}
	return n, nil
}

// backlogID is <run>-<seq>-<label>-<sent ms base 36>.
func backlogID(runID string, seq, label int, sent time.Time) string {
	return fmt.Sprintf("%s-%d-%d-%s", runID, seq, label, strconv.FormatInt(sent.UnixMilli(), 36))
}

// parseBacklogID recovers a backlog request's label and send time.
func parseBacklogID(runID string, n int, id string) (*entry, bool) {
	rest, ok := strings.CutPrefix(id, runID+"-")
	if !ok {
		return nil, false
	}
	f := strings.Split(rest, "-")
	if len(f) != 3 {
		return nil, false
	}
	seq, err1 := strconv.Atoi(f[0])
	label, err2 := strconv.Atoi(f[1])
	ms, err3 := strconv.ParseInt(f[2], 36, 64)
	if err1 != nil || err2 != nil || err3 != nil || seq < 0 || seq >= n {
		return nil, false
	}
	return &entry{label: label, sent: time.UnixMilli(ms)}, true
}

// BacklogReceipt describes a published backlog.
type BacklogReceipt struct {
	RunID     string `json:"run_id"`
	Model     string `json:"model"`
	Published int    `json:"published"`
	// Inbox is where the replies go; collect them with StartCollect(RunID).
	Inbox   string `json:"inbox"`
	FirstID string `json:"first_id"`
	LastID  string `json:"last_id"`
}

// Backlog publishes n requests straight into the model's work stream without
// waiting for replies, which go to BacklogInbox(run id). The requests carry
// no deadline, so they wait for workers however long that takes. WithRunID
// may give a run id from BacklogRunID(n) (to collect before publishing);
// otherwise a fresh one is made. WithTimeout bounds the wait for the
// PubAcks; WithRetry re-sends (same id) a request the stream did not
// acknowledge.
func Backlog(ctx context.Context, nc *nats.Conn, n int, opts ...Option) (*BacklogReceipt, error) {
	o := newOptions(opts)
	if err := o.validate(); err != nil {
		return nil, err
	}
	if n < 1 {
		return nil, fmt.Errorf("%w: backlog %d must be at least 1", ErrOptions, n)
	}
	runID := o.runID
	if runID == "" {
		runID = BacklogRunID(n)
	} else if m, err := ParseBacklogRunID(runID); err != nil {
		return nil, err
	} else if m != n {
		return nil, fmt.Errorf("%w: run id %s is for %d requests, not %d", ErrOptions, runID, m, n)
	}
	cl, err := client.New(nc, client.WithEncoding(o.enc), client.WithRetry(o.retry))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	inbox := connInboxPrefix(nc, runID) + "b"
	r := &BacklogReceipt{RunID: runID, Model: o.model, Inbox: inbox}
	pctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	ids := make([]string, n)
	errs := make([]error, n)
	// Enqueue waits for its PubAck: keep many in flight.
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(n, backlogInFlight) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				p := o.pairs[i%len(o.pairs)]
				ids[i] = backlogID(runID, i, p.Label, time.Now())
				_, errs[i] = cl.Enqueue(pctx, o.model, client.Text{A: p.A, B: p.B}, inbox, client.WithID(ids[i]))
			}
		}()
	}
	for i := 0; i < n && pctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	var failed int
	var first error
	for i, err := range errs {
		switch {
		case ids[i] == "": // never sent: ctx ended first
		case err == nil:
			r.Published++
			if r.FirstID == "" {
				r.FirstID = ids[i]
			}
			r.LastID = ids[i]
			continue
		case first == nil:
			first = err
		}
		failed++
	}
	o.log.Info().Str("run", runID).Str("model", o.model).Int("published", r.Published).Int("failed", failed).Msg("backlog published")
	if err := ctx.Err(); err != nil {
		return r, err
	}
	switch {
	case failed == 0:
		return r, nil
	case first == nil:
		return r, fmt.Errorf("%w: no PubAck for %d requests within %s", ErrPublish, failed, o.timeout)
	case errors.Is(first, jetstream.ErrNoStreamResponse):
		return r, fmt.Errorf("%w: %d of %d: no stream captures %s: is the broker running and provisioned?", ErrPublish, failed, n, schemas.WorkSubject(o.model))
	}
	return r, fmt.Errorf("%w: %d of %d: %v", ErrPublish, failed, n, first)
}

// backlogInFlight is how many requests Backlog publishes at a time.
const backlogInFlight = 64

// Collector gathers a backlog's replies by id.
type Collector struct {
	nc    *nats.Conn
	o     options
	runID string
	n     int
	t     *tracker
	sub   *nats.Subscription
	all   chan struct{}
	start time.Time
}

// StartCollect subscribes to a backlog's inbox; when it returns, replies
// are being received. The count comes from the run id.
func StartCollect(nc *nats.Conn, runID string, opts ...Option) (*Collector, error) {
	n, err := ParseBacklogRunID(runID)
	if err != nil {
		return nil, err
	}
	o := newOptions(opts)
	c := &Collector{nc: nc, o: o, runID: runID, n: n, t: newTracker(), all: make(chan struct{}), start: time.Now()}
	c.t.parse = func(id string) (*entry, bool) { return parseBacklogID(runID, n, id) }
	signalled := false
	c.sub, err = nc.Subscribe(connInboxPrefix(nc, runID)+">", func(m *nats.Msg) {
		c.t.handle(m, time.Now())
		if _, _, _, r := c.t.counts(); r >= n && !signalled {
			signalled = true // handlers of one subscription run one at a time
			close(c.all)
		}
	})
	if err != nil {
		return nil, err
	}
	c.sub.SetPendingLimits(-1, 256<<20)
	if err := nc.Flush(); err != nil {
		c.sub.Unsubscribe()
		return nil, err
	}
	o.log.Info().Str("run", runID).Int("expect", n).Msg("collecting backlog replies")
	return c, nil
}

// Wait collects until every request of the backlog is answered, the
// WithTimeout elapses (counted from this call), or ctx ends; then it
// unsubscribes and summarizes. Requests without a reply count as lost.
func (c *Collector) Wait(ctx context.Context) (*Summary, error) {
	defer c.sub.Unsubscribe()
	begin := time.Now()
	stop := progress(c.o, c.t, begin, c.n)
	timer := time.NewTimer(c.o.timeout)
	defer timer.Stop()
	var err error
	select {
	case <-c.all:
		// A duplicate may still be on its way.
		if c.o.linger > 0 {
			select {
			case <-time.After(c.o.linger):
			case <-ctx.Done():
			}
		}
	case <-timer.C:
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	c.sub.Unsubscribe()
	wall := time.Since(begin)
	s := &Summary{RunID: c.runID, Model: c.o.model, Mode: "collect"}
	c.t.mu.Lock()
	// Throughput counts from when the first answer came, not from when the
	// collector began: it may have waited long for a worker to start.
	if span := c.t.lastAt.Sub(c.t.firstAt); c.t.answered > 1 && span > 0 {
		wall = span * time.Duration(c.t.answered) / time.Duration(c.t.answered-1)
	}
	// Requests never heard of are lost: the run id says how many there were.
	missing := c.n - c.t.resolved
	c.t.sent += missing
	c.t.lost += missing
	s.start = c.t.firstAt
	c.t.mu.Unlock()
	c.t.summary(s, wall)
	return s, err
}

// Close stops collecting without a summary.
func (c *Collector) Close() { c.sub.Unsubscribe() }

// Collect is StartCollect followed by Wait.
func Collect(ctx context.Context, nc *nats.Conn, runID string, opts ...Option) (*Summary, error) {
	c, err := StartCollect(nc, runID, opts...)
	if err != nil {
		return nil, err
	}
	return c.Wait(ctx)
}
