package worker

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pull keeps requests flowing into w.raw until ctx ends (see feed.go): it
// keeps two fetches (pull requests) outstanding on the shared durable, each
// for half the pull window, so that while the loops work through what one
// brought, the next is already on its way, and a loop finishing a batch finds
// the next one waiting instead of asking the server for it. How far it pulls
// ahead follows the engine's speed (see pullWindow). A fetch ends when it is
// full or when it expires on the server (WithFetchWait); only then is its
// subscription dropped, so no request is ever delivered to a subscription
// that is gone. A drain therefore issues no new fetch, waits for the
// outstanding ones to end (what they bring is still answered), then closes
// w.raw.
func (w *Worker) pull(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		close(w.raw) // no fetch delivers any more
	}()
	const fetches = 2
	slots := make(chan struct{}, fetches)
	failed := make(chan error, fetches)
	win := newPullWindow(w)
	resize := time.NewTicker(time.Second)
	defer resize.Stop()
	var lastWarn time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case slots <- struct{}{}:
		}
		select {
		case err := <-failed:
			<-slots
			w.fetchFailed(ctx, err, &lastWarn)
			continue
		case <-resize.C:
			if size, ok := win.resize(); ok {
				w.log.Info().Int("pull", size).Msg("pull window resized to the engine's speed")
			}
		default:
		}
		cons, _, _ := w.consumer()
		batch, err := cons.Fetch(max(1, win.size/fetches), jetstream.FetchMaxWait(w.o.fetchWait))
		if err != nil {
			<-slots
			w.fetchFailed(ctx, err, &lastWarn)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			for m := range batch.Messages() {
				w.receive(m)
			}
			if err := batch.Error(); err != nil {
				select {
				case failed <- err: // the pull loop pauses before the next fetch
				default: // one waiting is enough
				}
			}
		}()
	}
}

// fetchFailed reports a failed fetch (at most every 5 s), re-creates the
// consumer when it is gone, and pauses before the next try.
func (w *Worker) fetchFailed(ctx context.Context, err error, lastWarn *time.Time) {
	if time.Since(*lastWarn) > 5*time.Second {
		w.log.Warn().Err(err).Msg("pulling requests failed; retrying")
		*lastWarn = time.Now()
	}
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		if _, err := w.ensureConsumer(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("re-creating the consumer failed")
		}
	}
	select {
	case <-ctx.Done():
	case <-time.After(500 * time.Millisecond):
	}
}

// pullLead is how much of the engine's work a worker keeps on its way from
// the server: enough to cover a pull's round trip on a busy host, so that the
// loops never wait on the network, and little enough that a slow engine does
// not hoard requests other workers could serve, nor hold them near AckWait.
const pullLead = 50 * time.Millisecond

// maxPull bounds the pull window whatever the engine's speed.
const maxPull = 1024

// pullWindow sizes the fetches: WithPrefetch fixes it; by default it starts
// at one batch per loop and follows the engine's measured capacity (requests
// per second of compute, across the loops) × pullLead.
type pullWindow struct {
	w              *Worker
	size, min, max int
	fixed          bool
	seqs           uint64  // requests run, at the last look
	computeMS      float64 // engine time spent on them, at the last look
}

func newPullWindow(w *Worker) *pullWindow {
	p := &pullWindow{w: w, min: w.o.parallel * w.limits.Seqs}
	p.max = max(p.min, min(maxPull, w.o.maxAckPending/2))
	p.size, p.fixed = p.min, w.o.prefetch > 0
	if p.fixed {
		p.size = w.o.prefetch
	}
	p.seqs, p.computeMS = w.m.realSlots.Load(), w.m.compute.total()
	return p
}

// resize returns the window the engine's speed since the last look asks for,
// and whether it differs from the current one by 2× or more.
func (p *pullWindow) resize() (int, bool) {
	if p.fixed {
		return p.size, false
	}
	seqs, computeMS := p.w.m.realSlots.Load(), p.w.m.compute.total()
	dSeqs, dMS := seqs-p.seqs, computeMS-p.computeMS
	if dSeqs < 2*uint64(p.w.o.parallel) || dMS <= 0 {
		return p.size, false // too little run to judge by
	}
	p.seqs, p.computeMS = seqs, computeMS
	perSecond := float64(dSeqs) / (dMS / 1000) * float64(p.w.o.parallel)
	want := min(p.max, max(p.min, int(math.Ceil(perSecond*pullLead.Seconds()))))
	if want < 2*p.size && 2*want > p.size {
		return p.size, false
	}
	p.size = want
	return want, true
}

// leases are the requests this worker holds unacked: fetched, waiting, in a
// batch, or being answered. JetStream redelivers a request whose AckWait
// passes without word, so every held request is renewed (InProgress) while
// it waits, however long the engine takes.
type leases struct {
	mu   sync.Mutex
	held map[jetstream.Msg]time.Time // when each was fetched or last renewed
}

func (l *leases) hold(m jetstream.Msg) {
	l.mu.Lock()
	if l.held == nil {
		l.held = map[jetstream.Msg]time.Time{}
	}
	l.held[m] = time.Now()
	l.mu.Unlock()
}

func (l *leases) drop(m jetstream.Msg) {
	l.mu.Lock()
	delete(l.held, m)
	l.mu.Unlock()
}

func (l *leases) release(jobs ...*job) {
	l.mu.Lock()
	for _, j := range jobs {
		delete(l.held, j.msg)
	}
	l.mu.Unlock()
}

// stale returns the requests held longer than d, marked renewed now.
func (l *leases) stale(d time.Duration, now time.Time) []jetstream.Msg {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []jetstream.Msg
	for m, t := range l.held {
		if now.Sub(t) >= d {
			out = append(out, m)
			l.held[m] = now
		}
	}
	return out
}

// renewLeases tells JetStream, every quarter of the AckWait, that the
// requests held longer than that are still being worked on.
func (w *Worker) renewLeases(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		_, _, ackWait := w.consumer() // re-read: another worker may change it
		every := max(ackWait/4, 10*time.Millisecond)
		t.Reset(every)
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, m := range w.leases.stale(every, now) {
				m.InProgress()
			}
		}
	}
}
