package worker

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// pull keeps requests flowing into w.ready until ctx ends: one Consume on the
// shared durable, pulling ahead up to the prefetch, so that a loop finishing a
// batch finds the next one waiting instead of asking the server for it. Each
// request is decoded and tokenized here, off the loops. On cancellation the
// pull is drained: what the server already sent is still decoded and queued,
// and the loops answer it. It restarts the Consume when the consumer vanishes
// or the connection closes under it.
func (w *Worker) pull(ctx context.Context) {
	var lastWarn time.Time
	for ctx.Err() == nil {
		cc, err := w.consume()
		if err == nil {
			select {
			case <-ctx.Done():
				cc.Drain()
				<-cc.Closed()
				return
			case <-cc.Closed():
				err = errors.New("the pull stopped")
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

// consume starts pulling from the current consumer.
func (w *Worker) consume() (jetstream.ConsumeContext, error) {
	cons, _, _ := w.consumer()
	return cons.Consume(w.receive,
		jetstream.PullMaxMessages(w.pullSize()),
		jetstream.PullExpiry(w.o.fetchWait),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !errors.Is(err, jetstream.ErrNoHeartbeat) {
				w.log.Debug().Err(err).Msg("pull")
			}
		}))
}

// pullSize is how many requests may be on their way from the server: half
// the prefetch; the other half waits decoded in w.ready. A new pull request
// goes out when half of the last one has arrived, so the loops find requests
// waiting as long as the server has them.
func (w *Worker) pullSize() int { return max(1, w.o.prefetch/2) }

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
