package worker

import (
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The feed between the pull and the loops. The fetches only queue each
// message (w.raw); a decoder goroutine decodes, validates and tokenizes them
// ahead of need (w.ready), off the loops. A loop topping up its batch also
// decodes what the decoder has not reached yet, and waits for the one it is
// finishing, so that requests that arrived together are batched together
// even right after an idle spell.

// receive queues one fetched message, held (kept alive) from now on. It
// blocks while the worker is a full feed behind, which holds back the pull.
func (w *Worker) receive(m jetstream.Msg) {
	w.leases.hold(m)
	w.undecoded.Add(1)
	w.raw <- m
}

// decoder decodes pulled messages into w.ready until the pull has stopped
// and every pulled message is decoded, then closes w.ready.
func (w *Worker) decoder() {
	for m := range w.raw {
		if j := w.admit(m); j != nil {
			w.ready <- j
		}
		w.undecoded.Add(-1) // after the push: none pending means all in ready
	}
	close(w.ready)
}

// admit decodes one message into a job the loops can run, or answers it at
// once when it cannot be run (nil).
func (w *Worker) admit(m jetstream.Msg) *job {
	j, e := w.decode(m, time.Now())
	if e != nil {
		w.leases.drop(m)
		w.reject(j, e)
		return nil
	}
	return j
}

// next blocks for the next request; ok is false once pulling has stopped and
// every pulled request has been taken.
func (w *Worker) next() (*job, bool) { return w.await(nil) }

// await returns the next decoded request: from the decoder, or decoded here
// from what it has not reached. ok is false once pulling has stopped and
// every pulled request has been taken, or when giveUp fires (nil: never).
func (w *Worker) await(giveUp <-chan time.Time) (*job, bool) {
	raw := w.raw
	for {
		select {
		case j, ok := <-w.ready:
			return j, ok
		case m, open := <-raw:
			if !open {
				raw = nil // the decoder closes ready once it is done
			} else if j := w.steal(m); j != nil {
				return j, true
			}
		case <-giveUp:
			return nil, false
		}
	}
}

// steal decodes a message the decoder has not reached yet, on the loop.
func (w *Worker) steal(m jetstream.Msg) *job {
	j := w.admit(m)
	w.undecoded.Add(-1)
	return j
}

// stragglerWait bounds how long a loop waits for the decoder to finish the
// request in its hands (a decode takes microseconds).
const stragglerWait = 200 * time.Microsecond

// waiting returns a request already pulled, without waiting for the server:
// decoded, or decoded here, or the one the decoder is finishing.
func (w *Worker) waiting() (*job, bool) {
	raw := w.raw
poll:
	for {
		select {
		case j, ok := <-w.ready:
			return j, ok
		case m, open := <-raw:
			if !open {
				raw = nil
			} else if j := w.steal(m); j != nil {
				return j, true
			}
		default:
			break poll
		}
	}
	if w.undecoded.Load() <= 0 {
		return nil, false // nothing pulled is on its way to ready
	}
	// The decoder is finishing one: park until it hands it over (or drops
	// it, a bad request), rather than spin for a busy CPU.
	t := time.NewTimer(stragglerWait)
	defer t.Stop()
	return w.await(t.C)
}
