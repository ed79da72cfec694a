package worker

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/schemas"
)

// batch is one loop's reusable static input and output.
type batch struct {
	in     engine.Input
	logits []float32
}

func newBatch(s engine.Spec) *batch {
	n := s.Batch * s.Seq
	return &batch{
		in: engine.Input{
			InputIDs:      make([]int32, n),
			TokenTypeIDs:  make([]int32, n),
			AttentionMask: make([]int32, n),
		},
		logits: make([]float32, s.Batch*s.Labels),
	}
}

// job is one valid request on its way through a batch.
type job struct {
	msg   jetstream.Msg
	reply string
	enc   schemas.Encoding
	id    string
	queue time.Duration
	row   struct{ ids, types, mask []int32 }
}

// process validates msgs, runs the valid ones as one batch and answers all.
func (w *Worker) process(r engine.Runner, b *batch, msgs []jetstream.Msg) {
	fetched := time.Now()
	jobs := make([]*job, 0, len(msgs))
	for _, m := range msgs {
		j, e := w.decode(m, fetched)
		if e != nil {
			w.reject(j, e)
			continue
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return
	}
	_, maxDeliver, ackWait := w.consumer()
	stop := w.keepAlive(jobs, ackWait)
	failed, cause := w.compute(r, b, jobs)
	stop()
	if len(failed) > 0 {
		w.failBatch(failed, cause, maxDeliver)
	}
}

// compute runs jobs as one batch and answers them. When the batch fails and
// holds more than one request, each runs again alone, so that one input the
// engine cannot run (a poison row) fails only itself and its batch-mates are
// answered. It returns the requests that failed and the last cause.
func (w *Worker) compute(r engine.Runner, b *batch, jobs []*job) (failed []*job, cause error) {
	cause = w.runBatch(r, b, jobs)
	if cause == nil {
		return nil, nil
	}
	if len(jobs) == 1 {
		return jobs, cause
	}
	w.log.Warn().Err(cause).Int("requests", len(jobs)).Msg("batch failed; running its requests one at a time")
	for _, j := range jobs {
		if err := w.runBatch(r, b, []*job{j}); err != nil {
			failed, cause = append(failed, j), err
		}
	}
	return failed, cause
}

// runBatch fills the static batch with jobs (padding the rest), runs it and
// answers every job; on an engine failure it answers none.
func (w *Worker) runBatch(r engine.Runner, b *batch, jobs []*job) error {
	w.fill(b, jobs)
	start := time.Now()
	err := runSafe(r, b.in, b.logits)
	compute := time.Since(start)
	if err != nil {
		w.m.failedBatch()
		return err
	}
	w.m.batch(len(jobs), w.spec.Batch-len(jobs), compute)
	L := w.spec.Labels
	for i, j := range jobs {
		w.answer(j, b.logits[i*L:(i+1)*L], compute, len(jobs))
	}
	return nil
}

// decode reads and validates one message into a job with its input row. On
// failure the job still carries what is needed to answer (reply, encoding, id).
func (w *Worker) decode(m jetstream.Msg, now time.Time) (j *job, e *schemas.Error) {
	h := m.Headers()
	j = &job{msg: m, reply: h.Get(schemas.HeaderReplyTo), id: h.Get(schemas.HeaderMsgID)}
	j.enc = schemas.Detect(h.Get(schemas.HeaderContentType), m.Data())
	if j.reply != "" && !schemas.ValidReplySubject(j.reply) {
		// The worker's permissions must not be aimed elsewhere: the request
		// is refused without a reply (there is nowhere safe to send one).
		w.log.Warn().Str("id", schemas.Clip(j.id, 64)).Str("reply_to", schemas.Clip(j.reply, 64)).
			Msg("request refused: its reply subject is not an inbox")
		bad := j.reply
		j.reply = ""
		return j, schemas.Errorf(schemas.CodeBadRequest, "the reply subject %q is not an inbox: replies go only to subjects under %s", schemas.Clip(bad, 64), schemas.InboxPrefix)
	}
	// A decoder bug must cost one request, not the worker.
	defer func() {
		if p := recover(); p != nil {
			w.log.Error().Str("id", schemas.Clip(j.id, 64)).Str("panic", schemas.Clip(fmt.Sprint(p), 200)).Msg("decoding a request panicked")
			e = schemas.Errorf(schemas.CodeInternal, "the worker could not read this request")
		}
	}()
	var req schemas.InferRequest
	if e := schemas.DecodeInferRequest(j.enc, m.Data(), &req); e != nil {
		if id := schemas.PeekID(j.enc, m.Data()); id != "" {
			j.id = id
		}
		return j, e
	}
	if req.ID != "" {
		j.id = req.ID
	}
	req.ID = j.id
	if e := req.Validate(w.shape, now); e != nil {
		return j, e
	}
	j.queue = queueTime(m, now)
	S := w.spec.Seq
	if req.Tokenized() {
		j.row.ids = req.InputIDs
		j.row.types = req.TokenTypeIDs
		if j.row.types == nil {
			j.row.types = make([]int32, S)
		}
		j.row.mask = req.AttentionMask
		if j.row.mask == nil {
			j.row.mask = make([]int32, S)
			for i := range j.row.mask {
				j.row.mask[i] = 1
			}
		}
		return j, nil
	}
	enc, err := w.info.Tokenizer.EncodePair(req.A, req.B, S)
	if err != nil {
		return j, schemas.Errorf(schemas.CodeInternal, "tokenizing: %v", err)
	}
	j.row.ids, j.row.types, j.row.mask = enc.InputIDs, enc.TokenTypeIDs, enc.AttentionMask
	return j, nil
}

// queueTime is how long the request waited: from the intake's Bertq-Enqueued
// stamp, else from when the stream stored it.
func queueTime(m jetstream.Msg, now time.Time) time.Duration {
	if s := m.Headers().Get(schemas.HeaderEnqueued); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return max(0, now.Sub(t))
		}
	}
	if md, err := m.Metadata(); err == nil {
		return max(0, now.Sub(md.Timestamp))
	}
	return 0
}

// fill copies the jobs' rows into the static batch and pads the remaining
// slots with dummy rows ([CLS] [SEP], attended) that nobody will read.
func (w *Worker) fill(b *batch, jobs []*job) {
	S := w.spec.Seq
	for slot := 0; slot < w.spec.Batch; slot++ {
		ids := b.in.InputIDs[slot*S : (slot+1)*S]
		types := b.in.TokenTypeIDs[slot*S : (slot+1)*S]
		mask := b.in.AttentionMask[slot*S : (slot+1)*S]
		if slot < len(jobs) {
			j := jobs[slot]
			copy(ids, j.row.ids)
			copy(types, j.row.types)
			copy(mask, j.row.mask)
			continue
		}
		for i := range ids {
			ids[i], types[i], mask[i] = w.pad, 0, 0
		}
		ids[0], ids[1] = w.cls, w.sep
		mask[0], mask[1] = 1, 1
	}
}

// runSafe runs the batch, turning an engine panic into an error so that one
// bad batch cannot take the worker down.
func runSafe(r engine.Runner, in engine.Input, logits []float32) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("engine panic: %v", p)
		}
	}()
	return r.Run(in, logits)
}

// keepAlive tells JetStream the batch is still being worked on every third of
// the AckWait, so a slow engine does not cause redeliveries.
func (w *Worker) keepAlive(jobs []*job, ackWait time.Duration) (stop func()) {
	if ackWait <= 0 {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				for _, j := range jobs {
					j.msg.InProgress()
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// answer replies to one computed request and acks it.
func (w *Worker) answer(j *job, logits []float32, compute time.Duration, real int) {
	for _, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			w.reject(j, schemas.Errorf(schemas.CodeInternal, "the model produced non-finite logits for this input"))
			return
		}
	}
	idx := schemas.Argmax(logits)
	rep := schemas.InferReply{
		V: schemas.Version, ID: j.id, Model: w.info.Name,
		Label: w.label(idx), LabelIndex: idx, Message: w.message(idx),
		Probabilities: schemas.Softmax(logits), Logits: append([]float32(nil), logits...),
		QueueMS: ms(j.queue), ComputeMS: ms(compute), BatchSize: real,
		Worker: w.o.id, Synthetic: w.info.Synthetic,
	}
	w.send(j, &rep, nil)
	w.m.request(codeOK, j.queue)
	w.ack(j)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func (w *Worker) label(i int) string {
	if i < len(w.info.Labels) && w.info.Labels[i] != "" {
		return w.info.Labels[i]
	}
	return fmt.Sprintf("LABEL_%d", i)
}

// message is the seed's wording for a 2-label (MRPC) model, where label 1 is
// "paraphrase"; other models get the label name.
func (w *Worker) message(i int) string {
	if w.spec.Labels == 2 {
		if i == 1 {
			return "paraphrase"
		}
		return "not paraphrase"
	}
	return w.label(i)
}

// reject answers a request that cannot be run and terminates it: a bad
// request stays bad, redelivering it would only repeat the error.
func (w *Worker) reject(j *job, e *schemas.Error) {
	rep := schemas.InferReply{V: schemas.Version, ID: j.id, Model: w.info.Name, Worker: w.o.id, Error: e}
	w.send(j, &rep, e)
	w.m.request(e.Code, 0)
	w.log.Debug().Str("id", schemas.Clip(j.id, 64)).Str("code", e.Code).Msg("request rejected")
	j.msg.TermWithReason(e.Code)
}

// failBatch handles requests the engine failed to run (alone, when they came
// in a batch of several): each is retried after a delay until its last
// allowed delivery, then dead-lettered with its headers and answered with an
// internal error.
func (w *Worker) failBatch(jobs []*job, cause error, maxDeliver int) {
	w.log.Error().Err(cause).Int("requests", len(jobs)).Msg("engine failed to run requests")
	for _, j := range jobs {
		md, err := j.msg.Metadata()
		last := err != nil || (maxDeliver > 0 && md.NumDelivered >= uint64(maxDeliver))
		if !last {
			w.m.retry()
			j.msg.NakWithDelay(w.o.retryDelay)
			continue
		}
		if err := w.deadLetter(j, cause); err != nil {
			// Leave it unacked in the stream rather than lose it.
			w.log.Error().Err(err).Str("id", schemas.Clip(j.id, 64)).Msg("dead-lettering failed; the request stays in the queue")
			continue
		}
		w.reject(j, schemas.Errorf(schemas.CodeInternal, "the model failed to run this request %d times; it was moved to %s", md.NumDelivered, schemas.DeadStream))
	}
}

func (w *Worker) deadLetter(j *job, cause error) error {
	m := nats.NewMsg(schemas.DeadSubject(w.info.Name))
	m.Data = j.msg.Data()
	for k, v := range j.msg.Headers() {
		m.Header[k] = append([]string(nil), v...)
	}
	m.Header.Set(schemas.HeaderErrorCode, schemas.CodeInternal)
	m.Header.Set(schemas.HeaderDeadReason, schemas.HeaderValue("engine failure: "+cause.Error()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := w.js.PublishMsg(ctx, m); err != nil {
		return err
	}
	w.m.dead()
	return nil
}

// send publishes a reply in the request's encoding to its inbox, if it gave one.
func (w *Worker) send(j *job, rep *schemas.InferReply, e *schemas.Error) {
	if j.reply == "" {
		return
	}
	body, err := schemas.Marshal(j.enc, rep)
	if err != nil {
		e = schemas.Errorf(schemas.CodeInternal, "encoding the reply: %v", err)
		body, _ = schemas.Marshal(j.enc, &schemas.InferReply{V: schemas.Version, ID: j.id, Model: w.info.Name, Error: e})
	}
	h := nats.Header{}
	h.Set(schemas.HeaderContentType, j.enc.ContentType())
	if e != nil {
		h.Set(schemas.HeaderErrorCode, e.Code)
		h.Set(micro.ErrorHeader, schemas.HeaderValue(e.Message))
		h.Set(micro.ErrorCodeHeader, e.Code)
	}
	if err := w.nc.PublishMsg(&nats.Msg{Subject: j.reply, Data: body, Header: h}); err != nil {
		w.log.Warn().Err(err).Str("id", schemas.Clip(j.id, 64)).Msg("reply failed")
	}
}

// ack confirms a request after its reply went out (at-least-once).
func (w *Worker) ack(j *job) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := j.msg.DoubleAck(ctx); err != nil {
		w.log.Warn().Err(err).Str("id", schemas.Clip(j.id, 64)).Msg("ack failed; the request may be answered twice")
	}
}
