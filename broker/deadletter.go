package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/schemas"
)

// maxDeliveriesSubject is where JetStream announces a message that used up
// its consumer's MaxDeliver without being acked.
const maxDeliveriesSubject = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + schemas.InferStream + ".*"

type deliveryExceeded struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// startDeadLetters moves requests that exhausted their deliveries without
// any worker seeing them fail (the worker crashed, or hung past AckWait, on
// the last try) to the dead-letter stream and tells the caller. A worker that
// sees the last try fail dead-letters the request itself and terminates it,
// so JetStream never announces those. Intakes share the work (queue group).
func (in *Intake) startDeadLetters() (*nats.Subscription, error) {
	return in.nc.QueueSubscribe(maxDeliveriesSubject, "bertq-dead-letters", func(m *nats.Msg) {
		var a deliveryExceeded
		if err := json.Unmarshal(m.Data, &a); err != nil || a.Stream != schemas.InferStream ||
			!strings.HasPrefix(a.Consumer, schemas.WorkerDurablePrefix) {
			return
		}
		if err := in.deadLetter(a); err != nil {
			in.log.Error().Err(err).Uint64("seq", a.StreamSeq).Str("consumer", a.Consumer).Msg("dead-lettering failed; the request stays in the queue")
		}
	})
}

func (in *Intake) deadLetter(a deliveryExceeded) error {
	ctx, cancel := context.WithTimeout(context.Background(), in.o.lookupTimeout)
	defer cancel()
	s, err := in.js.Stream(ctx, schemas.InferStream)
	if err != nil {
		return err
	}
	msg, err := s.GetMsg(ctx, a.StreamSeq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // acked or removed meanwhile
		}
		return err
	}
	model := strings.TrimPrefix(msg.Subject, schemas.WorkSubjectPrefix)
	dead := nats.NewMsg(schemas.DeadSubject(model))
	dead.Data = msg.Data
	for k, v := range msg.Header {
		dead.Header[k] = append([]string(nil), v...)
	}
	reason := fmt.Sprintf("delivered %d times without an answer: the worker crashed or exceeded AckWait", a.Deliveries)
	dead.Header.Set(schemas.HeaderErrorCode, schemas.CodeInternal)
	dead.Header.Set(schemas.HeaderDeadReason, reason)
	// A synchronous publish: the dead letter is stored before the original goes.
	if _, err := in.js.PublishMsg(ctx, dead); err != nil {
		return err
	}
	if err := s.DeleteMsg(ctx, a.StreamSeq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	enc := schemas.Detect(msg.Header.Get(schemas.HeaderContentType), msg.Data)
	p := &pendingReq{reply: msg.Header.Get(schemas.HeaderReplyTo), enc: enc, model: model,
		id: schemas.PeekID(enc, msg.Data)}
	if p.id == "" {
		p.id = msg.Header.Get(schemas.HeaderMsgID)
	}
	in.replyAsync(p, schemas.Errorf(schemas.CodeInternal,
		"the request was %s; it was moved to %s", reason, schemas.DeadStream))
	in.log.Warn().Str("id", schemas.Clip(p.id, 64)).Str("model", schemas.Clip(model, 64)).Uint64("deliveries", a.Deliveries).Msg("request dead-lettered")
	return nil
}
