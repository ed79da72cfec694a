package producer

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/client"
	"github.com/bertq/bertq/schemas"
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
//
// The requests go through one client.Client, whose inbox is
// InboxPrefix(run id) and whose ids are <run>-<client>-<seq>.
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
	t := newTracker()
	copts := []client.Option{
		client.WithInboxPrefix(connInboxPrefix(nc, runID)), client.WithEncoding(o.enc), client.WithRetry(o.retry),
		client.WithStrayHandler(func(r *client.Reply, _ error) { t.stray(r, time.Now()) }),
	}
	mode := "request"
	if o.direct {
		mode = "direct"
		copts = append(copts, client.WithDirect())
	}
	cl, err := client.New(nc, copts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	o.log.Info().Str("run", runID).Str("model", o.model).Str("mode", mode).Int("clients", o.clients).Int("cycle", o.cycle).Msg("producer starting")

	start := time.Now()
	stopProgress := progress(o, t, start, o.clients*o.cycle)
	var wg sync.WaitGroup
	for c := range o.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if abort := runClient(runCtx, cl, &o, t, runID, c); abort != nil {
				cancel(abort)
			}
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
	s.Resends = int(cl.Stats().Resends)
	s.start = start
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

// runClient sends one client's cycle, one request after another, and
// returns an error when the run must stop: nothing serves the model.
func runClient(ctx context.Context, cl *client.Client, o *options, t *tracker, runID string, c int) error {
	for s := 0; s < o.cycle && ctx.Err() == nil; s++ {
		// Consecutive clients take consecutive pairs, so a batch mixes pairs.
		p := o.pairs[(s*o.clients+c)%len(o.pairs)]
		id := fmt.Sprintf("%s-%d-%d", runID, c, s)
		t.add(id, p.Label)
		rctx, cancel := context.WithTimeout(ctx, o.timeout)
		rep, err := cl.Infer(rctx, o.model, p.A, p.B, client.WithID(id))
		cancel()
		t.outcome(id, rep, err, time.Now())
		switch {
		case errors.Is(err, client.ErrNoResponders):
			return fmt.Errorf("%w on %s: is the broker running?", ErrNoIntake, schemas.InferSubject(o.model))
		case o.direct && o.retry == 0 && errors.Is(err, jetstream.ErrNoStreamResponse):
			// Without retries, a stream that does not answer ends the run at
			// once; with them it is a passing failure (a leader election).
			return fmt.Errorf("%w: no stream captures %s: is the broker running and provisioned?", ErrNoIntake, schemas.WorkSubject(o.model))
		}
	}
	return nil
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
