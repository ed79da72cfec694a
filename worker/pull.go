package worker

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pull keeps requests flowing into w.ready until ctx ends: a Consume on the
// shared durable pulls ahead, so that a loop finishing a batch finds the next
// one waiting instead of asking the server for it, and each request is decoded
// and tokenized here, off the loops. How far it pulls ahead follows the
// engine's speed (see pullWindow). On cancellation the pull is drained: what
// the server already sent is still decoded and queued, and the loops answer
// it. It restarts the Consume when the consumer vanishes or the connection
// closes under it.
func (w *Worker) pull(ctx context.Context) {
	var lastWarn time.Time
	var draining []jetstream.ConsumeContext // resized away, finishing their deliveries
	defer func() {
		for _, cc := range draining {
			<-cc.Closed()
		}
	}()
	win := newPullWindow(w)
	for ctx.Err() == nil {
		cc, err := w.consume(win.size)
		if err == nil {
			if cc, err = w.serve(ctx, cc, win, &draining); err == nil {
				cc.Drain()
				<-cc.Closed()
				return
			}
		}
		if time.Since(lastWarn) > 5*time.Second {
			w.log.Warn().Err(err).Msg("pulling requests failed; retrying")
			lastWarn = time.Now()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		if _, err := w.ensureConsumer(ctx); err != nil && ctx.Err() == nil {
			w.log.Warn().Err(err).Msg("re-creating the consumer failed")
		}
	}
}

// serve watches a running Consume until ctx ends (nil error: the caller
// drains it) or the Consume stops by itself. Every second it checks the pull
// window against the engine's speed and, when it is off by 2× or more, moves
// to a new Consume of the right size, draining the old one.
func (w *Worker) serve(ctx context.Context, cc jetstream.ConsumeContext, win *pullWindow, draining *[]jetstream.ConsumeContext) (jetstream.ConsumeContext, error) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return cc, nil
		case <-cc.Closed():
			return nil, errors.New("the pull stopped")
		case <-t.C:
			size, ok := win.resize()
			if !ok {
				continue
			}
			next, err := w.consume(size)
			if err != nil {
				w.log.Warn().Err(err).Msg("resizing the pull window failed; keeping the old one")
				continue
			}
			cc.Drain()
			*draining = append(pending(*draining), cc)
			cc = next
			w.log.Info().Int("pull", size).Msg("pull window resized to the engine's speed")
		}
	}
}

// pending keeps the drained Consumes still delivering.
func pending(ccs []jetstream.ConsumeContext) []jetstream.ConsumeContext {
	out := ccs[:0]
	for _, cc := range ccs {
		select {
		case <-cc.Closed():
		default:
			out = append(out, cc)
		}
	}
	return out
}

// consume starts pulling from the current consumer, at most size requests
// on their way at a time; a new pull request goes out when half of the last
// one has arrived.
func (w *Worker) consume(size int) (jetstream.ConsumeContext, error) {
	cons, _, _ := w.consumer()
	return cons.Consume(w.receive,
		jetstream.PullMaxMessages(size),
		jetstream.PullExpiry(w.o.fetchWait),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Debug().Err(err).Msg("pull")
			}
		}))
}

// pullLead is how much of the engine's work a worker keeps on its way from
// the server: enough to cover a pull's round trip on a busy host, so that the
// loops never wait on the network, and little enough that a slow engine does
// not hoard requests other workers could serve, nor hold them near AckWait.
const pullLead = 50 * time.Millisecond

// maxPull bounds the pull window whatever the engine's speed.
const maxPull = 1024

// pullWindow sizes the Consume: WithPrefetch fixes it; by default it starts
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

// receive is the Consume handler: it decodes one request and queues it for
// the loops, or answers it at once when it cannot be run. It blocks while the
// loops are a full prefetch behind, which holds back the next pull.
func (w *Worker) receive(m jetstream.Msg) {
	j, e := w.decode(m, time.Now())
	if e != nil {
		w.reject(j, e)
		return
	}
	w.leases.hold(j)
	w.ready <- j
}

// next blocks for the next request; ok is false once pulling has stopped and
// every pulled request has been taken.
func (w *Worker) next() (j *job, ok bool) {
	select {
	case j = <-w.ready:
		return j, true
	case <-w.pulled:
		// Pulling stopped: what is left in ready was pulled before.
		select {
		case j = <-w.ready:
			return j, true
		default:
			return nil, false
		}
	}
}

// waiting returns a request already queued, without waiting for one.
func (w *Worker) waiting() (*job, bool) {
	select {
	case j := <-w.ready:
		return j, true
	default:
		return nil, false
	}
}

// leases are the requests this worker holds unacked: prefetched, in a batch,
// or being answered. JetStream redelivers a request whose AckWait passes
// without word, so every held request is renewed (InProgress) while it waits,
// however long the engine takes.
type leases struct {
	mu   sync.Mutex
	held map[*job]time.Time // when each was pulled or last renewed
}

func (l *leases) hold(j *job) {
	l.mu.Lock()
	if l.held == nil {
		l.held = map[*job]time.Time{}
	}
	l.held[j] = time.Now()
	l.mu.Unlock()
}

func (l *leases) release(jobs ...*job) {
	l.mu.Lock()
	for _, j := range jobs {
		delete(l.held, j)
	}
	l.mu.Unlock()
}

// stale returns the requests held longer than d, marked renewed now.
func (l *leases) stale(d time.Duration, now time.Time) []*job {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*job
	for j, t := range l.held {
		if now.Sub(t) >= d {
			out = append(out, j)
			l.held[j] = now
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
			for _, j := range w.leases.stale(every, now) {
				j.msg.InProgress()
			}
		}
	}
}
