package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/schemas"
)

// call is one request from its first send to its outcome. Events (replies,
// PubAcks, timers, the context) arrive on NATS and timer goroutines; each
// takes mu. Sends never happen on a NATS callback: a publish may wait for
// PubAcks that only such a callback delivers.
type call struct {
	c        *Client
	id       string
	model    string
	data     []byte
	direct   bool
	enqueue  bool // done at the PubAck; no answer awaited
	token    string
	replyTo  string
	deadline time.Time // zero: none
	// ctxDeadline: the deadline is the context's, whose end the call awaits,
	// so that a caller sees its context done when the call ends by it.
	ctxDeadline bool
	done        chan struct{}

	mu       sync.Mutex
	finished bool
	attempts int
	due      time.Time // when the timer should act; zero: disarmed
	timer    *time.Timer
	stopCtx  func() bool
	lastErr  error // the last failure a re-send answered: reported at the deadline
	reply    *Reply
	ack      *jetstream.PubAck
	err      error
}

// send publishes the next attempt and arms the timer for the silence after it.
func (k *call) send() {
	k.mu.Lock()
	if k.finished {
		k.mu.Unlock()
		return
	}
	k.attempts++
	n := k.attempts
	var due time.Time
	if !k.ctxDeadline {
		due = k.deadline
	}
	if r := k.c.o.retry; r > 0 {
		if next := time.Now().Add(r); k.deadline.IsZero() || next.Before(k.deadline) {
			due = next
		}
	}
	k.armLocked(due)
	k.mu.Unlock()
	if n > 1 {
		k.c.resent.Add(1)
	}
	if err := k.c.publish(k, n); err != nil {
		k.onPublishError(err, n)
	}
}

func (k *call) armLocked(due time.Time) {
	k.due = due
	if due.IsZero() {
		if k.timer != nil {
			k.timer.Stop()
		}
		return
	}
	if k.timer == nil {
		k.timer = time.AfterFunc(time.Until(due), k.onTimer)
	} else {
		k.timer.Reset(time.Until(due))
	}
}

// onTimer acts at k.due: the deadline ends the call, silence before it re-sends.
func (k *call) onTimer() {
	k.mu.Lock()
	now := time.Now()
	if k.finished || k.due.IsZero() || now.Before(k.due) {
		k.mu.Unlock() // a firing the last arming superseded
		return
	}
	if !k.deadline.IsZero() && !now.Before(k.deadline) {
		if !k.ctxDeadline { // else the context ends the call
			k.expireLocked()
		}
		k.mu.Unlock()
		return
	}
	k.mu.Unlock()
	k.send()
}

// retryLocked re-sends after RetryBackoff when WithRetry allows and time is
// left, else ends the call with err. Should the deadline come first, the
// call ends with err rather than a bare timeout.
func (k *call) retryLocked(err error) {
	if k.c.o.retry <= 0 || (!k.deadline.IsZero() && time.Until(k.deadline) < RetryBackoff) {
		k.finishLocked(nil, nil, err)
		return
	}
	k.lastErr = err
	k.armLocked(time.Now().Add(RetryBackoff))
}

// onReply takes the answer to this call's inbox; false means the call was
// over already (the reply is a stray).
func (k *call) onReply(rep *Reply, err error) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.finished {
		return false
	}
	var e *Error
	switch {
	case err == nil:
		k.finishLocked(rep, nil, nil)
	case errors.As(err, &e) && e.Code == schemas.CodeUnavailable:
		k.retryLocked(err)
	case errors.As(err, &e) && e.Code == schemas.CodeDuplicate && k.attempts > 1:
		// A re-send met an earlier copy in the queue: its answer comes here.
	default:
		k.finishLocked(nil, nil, err)
	}
	return true
}

// onAck takes the PubAck of attempt n.
func (k *call) onAck(ack *jetstream.PubAck, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	switch {
	case k.finished:
	case k.enqueue:
		k.finishLocked(nil, ack, nil)
	case ack.Duplicate && n == 1:
		// The id was queued before this call sent it: the answer goes to
		// whoever sent it then.
		k.finishLocked(nil, nil, &Error{Code: schemas.CodeDuplicate, ID: k.id, Message: fmt.Sprintf(
			"the stream already holds a request with id %q (de-duplication window); its answer goes to that request's caller: send a fresh id", schemas.Clip(k.id, 64))})
	default:
		k.ack = ack // queued: the answer comes to the inbox
		k.lastErr = nil
	}
}

// onPublishError takes the failure of attempt n's publish.
func (k *call) onPublishError(err error, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.finished || n < k.attempts {
		return // a newer copy is on its way
	}
	e := publishError(err, k)
	var be *Error
	if errors.As(e, &be) && be.Code == schemas.CodeUnavailable {
		k.retryLocked(e)
		return
	}
	k.finishLocked(nil, nil, e)
}

func (k *call) finish(rep *Reply, ack *jetstream.PubAck, err error) {
	k.mu.Lock()
	k.finishLocked(rep, ack, err)
	k.mu.Unlock()
}

func (k *call) finishLocked(rep *Reply, ack *jetstream.PubAck, err error) {
	if k.finished {
		return
	}
	k.finished = true
	k.reply, k.ack, k.err = rep, ack, err
	if k.timer != nil {
		k.timer.Stop()
	}
	if k.stopCtx != nil {
		k.stopCtx()
	}
	k.c.mu.Lock()
	delete(k.c.calls, k.token)
	k.c.mu.Unlock()
	close(k.done)
}

func (k *call) timeoutError() error {
	what := "answer"
	if k.enqueue {
		what = "PubAck"
	}
	return &wrapped{
		msg:  fmt.Sprintf("bertq: no %s to request %q before its deadline (sent %d time(s))", what, schemas.Clip(k.id, 64), k.attempts),
		errs: []error{ErrTimeout, context.DeadlineExceeded},
	}
}

// expireLocked ends the call at its deadline: with the failure a re-send
// was answering, else ErrTimeout.
func (k *call) expireLocked() {
	err := k.lastErr
	if err == nil {
		err = k.timeoutError()
	}
	k.finishLocked(nil, nil, err)
}

// ctxDone ends the call when its context does.
func (k *call) ctxDone(ctx context.Context) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		k.expireLocked()
		return
	}
	k.finishLocked(nil, nil, fmt.Errorf("bertq: request %q abandoned: %w", schemas.Clip(k.id, 64), ctx.Err()))
}

// publishError maps a failed publish to the error a call ends with. Codes
// are those the intake answers for the same failures; unavailable ones are
// worth a re-send.
func publishError(err error, k *call) error {
	unavailable := func(msg string) error {
		return &Error{Code: schemas.CodeUnavailable, ID: k.id, Message: msg, cause: err}
	}
	var apiErr *jetstream.APIError
	msg := err.Error()
	if errors.As(err, &apiErr) {
		msg = apiErr.Description
	}
	switch {
	case errors.Is(err, nats.ErrConnectionClosed):
		return fmt.Errorf("%w: %w", ErrClosed, err)
	case strings.Contains(msg, "maximum messages"), strings.Contains(msg, "maximum bytes"):
		return &Error{Code: schemas.CodeQueueFull, ID: k.id, Message: "the request queue is at its limit (" + msg + "); retry later", cause: err}
	case strings.Contains(msg, "message size exceeds maximum"), errors.Is(err, nats.ErrMaxPayload):
		return &Error{Code: schemas.CodeBadRequest, ID: k.id, Message: "the request is larger than the queue accepts", cause: err}
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		return unavailable("no stream answered on " + schemas.WorkSubject(k.model) + ": it is electing a leader, or not provisioned (run `bertq provision`)")
	case errors.Is(err, jetstream.ErrAsyncPublishTimeout), errors.Is(err, jetstream.ErrTooManyStalledMsgs),
		errors.Is(err, nats.ErrDisconnected), errors.Is(err, nats.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return unavailable("the request queue did not acknowledge in time: " + schemas.Clip(msg, 200))
	}
	return fmt.Errorf("%w: request %q: %w", ErrPublish, schemas.Clip(k.id, 64), err)
}
