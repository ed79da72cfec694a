package producer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bertq/bertq/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// InboxRoot is the prefix of every producer inbox: _INBOX.bertq.<run>.>.
const InboxRoot = "_INBOX.bertq."

// InboxPrefix is the subject prefix of a run's inboxes (ends with '.').
func InboxPrefix(runID string) string { return InboxRoot + runID + "." }

// connInboxPrefix is InboxPrefix under the connection's own inbox prefix
// when it has one (nats.CustomInboxPrefix, e.g. "_INBOX.producer" for a user
// allowed to subscribe only below it: see deploy/SECURITY.md).
func connInboxPrefix(nc *nats.Conn, runID string) string {
	if p := nc.Opts.InboxPrefix; p != "" {
		return p + ".bertq." + runID + "."
	}
	return InboxPrefix(runID)
}

const runAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newRunID returns 10 random characters of [a-z0-9].
func newRunID() string {
	b := make([]byte, 10)
	rand.Read(b)
	for i := range b {
		b[i] = runAlphabet[int(b[i])%len(runAlphabet)]
	}
	return string(b)
}

func validRunBase(s string) bool {
	if len(s) != 10 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(runAlphabet, rune(s[i])) {
			return false
		}
	}
	return true
}

func (o *options) validate() error {
	switch {
	case !schemas.ValidName(o.model):
		return fmt.Errorf("%w: model name %q: want 1-64 of [A-Za-z0-9_-]", ErrOptions, schemas.Clip(o.model, 80))
	case o.clients < 1 || o.clients > 10000:
		return fmt.Errorf("%w: clients %d out of range 1..10000", ErrOptions, o.clients)
	case o.cycle < 1:
		return fmt.Errorf("%w: cycle %d must be at least 1", ErrOptions, o.cycle)
	case o.timeout <= 0:
		return fmt.Errorf("%w: timeout must be positive", ErrOptions)
	case len(o.pairs) == 0:
		return fmt.Errorf("%w: no pairs to send", ErrOptions)
	}
	return nil
}

// Run drives the load: WithClients clients each send WithCycle requests one
// after another and wait up to WithTimeout for each reply. On cancellation it
// returns the summary so far with ctx's error. With no intake (or, with
// WithDirect, no stream) it stops early and returns ErrNoIntake.
func Run(ctx context.Context, nc *nats.Conn, opts ...Option) (*Summary, error) {
	o := newOptions(opts)
	if err := o.validate(); err != nil {
		return nil, err
	}
	runID := o.runID
	if runID == "" {
		runID = newRunID()
	} else if !validRunBase(runID) {
		return nil, fmt.Errorf("%w: run id %q: want 10 of [a-z0-9]", ErrOptions, schemas.Clip(runID, 40))
	}
	var js jetstream.JetStream
	if o.direct {
		var err error
		if js, err = jetstream.New(nc); err != nil {
			return nil, err
		}
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	t := newTracker(o.clients)
	t.retry = o.retry > 0
	t.onNoResponders = func() {
		cancel(fmt.Errorf("%w on %s: is the broker running?", ErrNoIntake, schemas.InferSubject(o.model)))
	}
	noStream := func() {
		cancel(fmt.Errorf("%w: no stream captures %s: is the broker running and provisioned?", ErrNoIntake, schemas.WorkSubject(o.model)))
	}
	prefix := connInboxPrefix(nc, runID)
	sub, err := nc.Subscribe(prefix+">", func(m *nats.Msg) {
		client := -1
		if tok, ok := strings.CutPrefix(m.Subject[len(prefix):], "c"); ok {
			if c, err := strconv.Atoi(tok); err == nil {
				client = c
			}
		}
		t.handle(m, client, time.Now())
	})
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	// Replies may burst at 48 × batch; never drop them as a slow consumer.
	sub.SetPendingLimits(-1, 256<<20)
	if err := nc.Flush(); err != nil {
		return nil, err
	}
	mode := "request"
	if o.direct {
		mode = "direct"
	}
	o.log.Info().Str("run", runID).Str("model", o.model).Str("mode", mode).Int("clients", o.clients).Int("cycle", o.cycle).Msg("producer starting")

	start := time.Now()
	stopProgress := progress(o, t, start, o.clients*o.cycle)
	var wg sync.WaitGroup
	for c := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client(runCtx, nc, js, &o, t, runID, c, noStream)
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	stopProgress()
	// Listen a little longer for duplicates and late replies.
	if o.linger > 0 && runCtx.Err() == nil {
		select {
		case <-time.After(o.linger):
		case <-runCtx.Done():
		}
	}
	s := &Summary{RunID: runID, Model: o.model, Mode: mode, Encoding: o.enc.String(), Clients: o.clients, Cycle: o.cycle}
	t.summary(s, wall)
	o.log.Info().Str("run", runID).Int("answered", s.Answered).Int("errors", s.Errors).Int("lost", s.Lost).Float64("throughput_per_s", s.ThroughputPerS).Msg("producer done")
	if err := ctx.Err(); err != nil {
		return s, err
	}
	// runCtx is only cancelled (before the deferred cancel) by an abort.
	if runCtx.Err() != nil {
		return s, context.Cause(runCtx)
	}
	return s, nil
}

// client sends one client's cycle.
func client(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, o *options, t *tracker, runID string, c int, noStream func()) {
	inbox := fmt.Sprintf("%sc%d", connInboxPrefix(nc, runID), c)
	timer := time.NewTimer(o.timeout)
	defer timer.Stop()
	for s := 0; s < o.cycle && ctx.Err() == nil; s++ {
		// Consecutive clients take consecutive pairs, so a batch mixes pairs.
		p := o.pairs[(s*o.clients+c)%len(o.pairs)]
		id := fmt.Sprintf("%s-%d-%d", runID, c, s)
		e := t.add(c, id, p.Label)
		deadline := e.sent.Add(o.timeout)
		req := schemas.InferRequest{V: schemas.Version, ID: id, Model: o.model, A: p.A, B: p.B, Deadline: deadline.UTC()}
		data, err := schemas.Marshal(o.enc, &req)
		if err != nil {
			t.fail(id, schemas.CodeInternal)
			continue
		}
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				t.noteResend()
			}
			code, fatal := send(ctx, nc, js, o, id, inbox, data, deadline)
			if fatal {
				t.fail(id, code)
				noStream()
				return
			}
			if code != "" && (o.retry == 0 || time.Until(deadline) < retryBackoff) {
				t.fail(id, code)
				break
			}
			wait := time.Until(deadline)
			if code != "" {
				wait = retryBackoff // the send failed: try again shortly
			} else if o.retry > 0 && o.retry < wait {
				wait = o.retry
			}
			timer.Reset(wait)
			select {
			case <-e.done:
			case <-e.again:
				sleepFor(ctx, min(retryBackoff, time.Until(deadline)))
				continue
			case <-timer.C:
				if o.retry > 0 && time.Now().Before(deadline) {
					continue
				}
				t.expire(id)
			case <-ctx.Done():
				t.expire(id)
			}
			break
		}
	}
}

// retryBackoff spaces re-sends after a failure, e.g. while a cluster elects a
// new stream leader.
const retryBackoff = 250 * time.Millisecond

// send publishes one request (the same id on every attempt) and returns a
// failure code, or "" once it is on its way. fatal means no stream captures
// the work subject at all: a misconfiguration, not a passing failure.
func send(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, o *options, id, inbox string, data []byte, deadline time.Time) (code string, fatal bool) {
	msg := &nats.Msg{Header: nats.Header{}, Data: data}
	msg.Header.Set(schemas.HeaderContentType, o.enc.ContentType())
	if js == nil {
		msg.Subject, msg.Reply = schemas.InferSubject(o.model), inbox
		if err := nc.PublishMsg(msg); err != nil {
			return CodePublish, false
		}
		return "", false
	}
	msg.Subject = schemas.WorkSubject(o.model)
	msg.Header.Set(schemas.HeaderReplyTo, inbox)
	msg.Header.Set(schemas.HeaderMsgID, id)
	pctx, cancel := context.WithDeadline(ctx, deadline)
	if o.retry > 0 {
		// Bound each attempt, so that a publish lost with a dying node is retried.
		pctx, cancel = context.WithTimeout(pctx, min(o.retry, time.Until(deadline)))
	}
	_, err := js.PublishMsg(pctx, msg)
	cancel()
	if err == nil {
		return "", false
	}
	// Without retries, a stream that does not answer ends the run at once; with
	// them it is a passing failure (a leader election) until the deadline.
	return publishCode(err), o.retry == 0 && errors.Is(err, jetstream.ErrNoStreamResponse)
}

func sleepFor(ctx context.Context, d time.Duration) {
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

// publishCode maps a JetStream publish failure to a reply code.
func publishCode(err error) string {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse):
		return schemas.CodeUnavailable
	case errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.Description), "maximum"):
		return schemas.CodeQueueFull
	case errors.Is(err, context.DeadlineExceeded):
		return schemas.CodeUnavailable
	}
	return CodePublish
}

// progress prints a line every o.every until the returned stop is called.
func progress(o options, t *tracker, start time.Time, total int) (stop func()) {
	if o.progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(o.every)
		defer tick.Stop()
		prev, prevAt := 0, start
		for {
			select {
			case <-done:
				return
			case now := <-tick.C:
				a, e, l, r := t.counts()
				rate := float64(a-prev) / now.Sub(prevAt).Seconds()
				prev, prevAt = a, now
				progressLine(o.progress, now.Sub(start), a, e, l, r, total, rate)
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func progressLine(w io.Writer, el time.Duration, answered, errs, lost, resolved, total int, rate float64) {
	fmt.Fprintf(w, "[%5.1fs] %d/%d done: %d answered (%.1f/s), %d errors, %d lost\n",
		el.Seconds(), resolved, total, answered, rate, errs, lost)
}
