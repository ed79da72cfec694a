package worker

import (
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/bertq/bertq/schemas"
)

// answered is a computed batch on its way to its callers.
type answered struct {
	jobs    []*job
	logits  []float32 // [len(jobs)][Labels], owned by the replier
	start   time.Time // when the engine started it
	compute time.Duration
	tokens  int // real tokens in the batch
}

// replier answers computed batches until the loops have stopped, off the
// loops' goroutines, so that a runner starts its next batch at once.
func (w *Worker) replier() {
	for a := range w.done {
		w.answerBatch(a)
	}
}

// answerBatch publishes a batch's replies, then acks its requests. Nothing
// waits on the network: replies and acks are buffered on the connection and
// leave together. The order is what makes delivery at-least-once: they share
// one connection, so the server has every reply before the ack that retires
// its request. A request whose reply could not be published is not acked;
// JetStream redelivers it.
func (w *Worker) answerBatch(a *answered) {
	L := w.spec.Labels
	sent := make([]bool, len(a.jobs))
	for i, j := range a.jobs {
		sent[i] = w.answer(j, a, a.logits[i*L:(i+1)*L])
	}
	for i, j := range a.jobs {
		if sent[i] {
			w.ack(j)
		}
	}
	w.leases.release(a.jobs...)
}

// answer replies to one computed request; false when it was not answered
// with a prediction (then it was rejected, or its reply failed).
func (w *Worker) answer(j *job, a *answered, logits []float32) bool {
	for _, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			w.reject(j, schemas.Errorf(schemas.CodeInternal, "the model produced non-finite logits for this input"))
			return false
		}
	}
	var queue time.Duration
	if !j.enqueued.IsZero() {
		queue = max(0, a.start.Sub(j.enqueued))
	}
	idx := schemas.Argmax(logits)
	rep := schemas.InferReply{
		V: schemas.Version, ID: j.id, Model: w.info.Name,
		Label: w.label(idx), LabelIndex: idx, Message: w.message(idx),
		Probabilities: schemas.Softmax(logits), Logits: logits,
		QueueMS: ms(queue), ComputeMS: ms(a.compute), BatchSize: len(a.jobs), BatchTokens: a.tokens,
		Worker: w.o.id, Synthetic: w.info.Synthetic,
	}
	if !w.send(j, &rep, nil) {
		return false
	}
	w.m.request(codeOK, queue)
	return true
}

// send publishes a reply in the request's encoding to its inbox, if it gave
// one; false when publishing failed (the connection is closed).
func (w *Worker) send(j *job, rep *schemas.InferReply, e *schemas.Error) bool {
	if j.reply == "" {
		return true
	}
	body, err := schemas.Marshal(j.enc, rep)
	if err != nil {
		e = schemas.Errorf(schemas.CodeInternal, "encoding the reply: %v", err)
		body, _ = schemas.Marshal(j.enc, &schemas.InferReply{V: schemas.Version, ID: j.id, Model: w.info.Name, Error: e})
	}
	h := nats.Header{schemas.HeaderContentType: []string{j.enc.ContentType()}}
	if e != nil {
		h.Set(schemas.HeaderErrorCode, e.Code)
		h.Set(micro.ErrorHeader, schemas.HeaderValue(e.Message))
		h.Set(micro.ErrorCodeHeader, e.Code)
	}
	if err := w.nc.PublishMsg(&nats.Msg{Subject: j.reply, Data: body, Header: h}); err != nil {
		w.log.Warn().Err(err).Str("id", schemas.Clip(j.id, 64)).Msg("reply failed; the request stays unacked for redelivery")
		return false
	}
	return true
}

// ack confirms a request after its reply was published (at-least-once). It
// does not wait for the server: an ack lost with a failing server costs a
// redelivery (a second answer), never an answer.
func (w *Worker) ack(j *job) {
	if err := j.msg.Ack(); err != nil {
		w.log.Warn().Err(err).Str("id", schemas.Clip(j.id, 64)).Msg("ack failed; the request may be answered twice")
	}
}
