package worker

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/schemas"
)

// batch is one loop's reusable engine input: the static shape's buffers
// (PadStatic) or the packed ones (PadNone), and the logits.
type batch struct {
	static engine.Input
	packed struct{ ids, types, mask, lens []int32 }
	logits []float32
}

func newBatch(s engine.Spec, pad Pad) *batch {
	n := s.Batch * s.Seq
	b := &batch{logits: make([]float32, s.Batch*s.Labels)}
	if pad == PadStatic {
		b.static = engine.Input{InputIDs: make([]int32, n), TokenTypeIDs: make([]int32, n), AttentionMask: make([]int32, n)}
	} else {
		b.packed.ids, b.packed.types = make([]int32, 0, n), make([]int32, 0, n)
		b.packed.mask, b.packed.lens = make([]int32, 0, n), make([]int32, 0, s.Batch)
	}
	return b
}

// job is one valid request on its way through a batch.
type job struct {
	msg      jetstream.Msg
	reply    string
	enc      schemas.Encoding
	id       string
	enqueued time.Time // zero: unknown
	deadline time.Time // zero: none
	row      struct{ ids, types, mask []int32 }
	// n is how many rows of row the engine gets packed: up to the last
	// attended token, or all of them when the mask has holes before it.
	n int
	// real counts the attended tokens.
	real  int
	holes bool
}

// loop is one batch loop with its own Runner and buffers. It ends when
// pulling has stopped and every pulled request has been run.
func (w *Worker) loop(r engine.Runner) {
	b := newBatch(w.spec, w.o.padding)
	var carry *job
	for {
		jobs, next, ok := w.gather(carry)
		if !ok {
			return
		}
		carry = next
		w.process(r, b, jobs)
	}
}

// gather blocks for a first request (the one carried over from the last
// batch, else the next pulled), then tops the batch up with requests already
// waiting, without waiting for more, while they fit the limits. A request
// that does not fit comes back as next, to open the following batch. Requests
// whose deadline passed meanwhile are answered so, without running. ok is
// false when nothing is left to run.
func (w *Worker) gather(carry *job) (jobs []*job, next *job, ok bool) {
	tokens := 0
	for len(jobs) == 0 {
		j := carry
		carry = nil
		if j == nil {
			if j, ok = w.next(); !ok {
				return nil, nil, false
			}
		}
		if !w.expired(j) {
			jobs, tokens = append(jobs, j), w.rows(j)
		}
	}
	for len(jobs) < w.limits.Seqs {
		j, ok := w.waiting()
		if !ok {
			break
		}
		if w.expired(j) {
			continue
		}
		if w.o.padding == PadNone && !w.limits.Admits(len(jobs), tokens, j.n) {
			return jobs, j, true
		}
		jobs, tokens = append(jobs, j), tokens+w.rows(j)
	}
	return jobs, nil, true
}

// rows is how many token rows a request costs the engine.
func (w *Worker) rows(j *job) int {
	if w.o.padding == PadStatic {
		return w.spec.Seq
	}
	return j.n
}

// expired answers a request whose deadline passed while it waited for a
// batch, and reports so.
func (w *Worker) expired(j *job) bool {
	if j.deadline.IsZero() || time.Now().Before(j.deadline) {
		return false
	}
	w.leases.release(j)
	w.reject(j, schemas.Errorf(schemas.CodeDeadline, "the deadline %s passed before the request could be run", j.deadline.UTC().Format(time.RFC3339Nano)))
	return true
}

// process runs one batch; the replier answers it. Requests the engine
// cannot run are retried or dead-lettered (failBatch).
func (w *Worker) process(r engine.Runner, b *batch, jobs []*job) {
	_, maxDeliver, _ := w.consumer()
	failed, cause := w.compute(r, b, jobs)
	if len(failed) > 0 {
		w.failBatch(failed, cause, maxDeliver)
		w.leases.release(failed...) // settled, or left for JetStream to redeliver
	}
}

// compute runs jobs as one batch. When the batch fails and holds more than
// one request, each runs again alone, so that one input the engine cannot
// run (a poison row) fails only itself and its batch-mates are answered. It
// returns the requests that failed and the last cause.
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

// runBatch lays jobs out (packed, or static with dummy rows), runs them and
// hands the results to the replier; on an engine failure it hands none.
func (w *Worker) runBatch(r engine.Runner, b *batch, jobs []*job) error {
	in, rows := w.fill(b, jobs)
	start := time.Now()
	err := runSafe(r, in, b.logits)
	compute := time.Since(start)
	if err != nil {
		w.m.failedBatch()
		return err
	}
	real := 0
	for _, j := range jobs {
		real += j.real
	}
	padded := 0
	if w.o.padding == PadStatic {
		padded = w.spec.Batch - len(jobs)
	}
	w.m.batch(len(jobs), padded, real, rows, compute)
	w.done <- &answered{
		jobs: jobs, logits: slices.Clone(b.logits[:len(jobs)*w.spec.Labels]),
		start: start, compute: compute, tokens: real,
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
	j.enqueued, j.deadline = enqueuedAt(m), req.Deadline
	S := w.spec.Seq
	if !req.Tokenized() {
		enc, err := w.info.Tokenizer.EncodePair(req.A, req.B, S)
		if err != nil {
			return j, schemas.Errorf(schemas.CodeInternal, "tokenizing: %v", err)
		}
		j.row.ids, j.row.types, j.row.mask = enc.InputIDs, enc.TokenTypeIDs, enc.AttentionMask
	} else {
		j.row.ids, j.row.types, j.row.mask = req.InputIDs, req.TokenTypeIDs, req.AttentionMask
		if j.row.types == nil {
			j.row.types = make([]int32, S)
		}
		if j.row.mask == nil {
			j.row.mask = make([]int32, S)
			for i := range j.row.mask {
				j.row.mask[i] = 1
			}
		}
	}
	j.measure()
	return j, nil
}

// measure finds a row's real length: trailing unattended tokens are padding
// and are dropped when packed; a row with holes before its last attended
// token keeps all its rows and its mask.
func (j *job) measure() {
	last := -1
	for i, m := range j.row.mask {
		if m != 0 {
			last = i
			j.real++
		}
	}
	j.n = last + 1
	if j.real != j.n {
		j.holes, j.n = true, len(j.row.ids)
	}
}

// enqueuedAt is when the request was queued: the intake's Bertq-Enqueued
// stamp, else when the stream stored it; zero when neither can be read.
func enqueuedAt(m jetstream.Msg) time.Time {
	if s := m.Headers().Get(schemas.HeaderEnqueued); s != "" {
		if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return t
		}
	}
	if md, err := m.Metadata(); err == nil {
		return md.Timestamp
	}
	return time.Time{}
}

// fill lays the jobs out for the engine and returns the token rows it will
// compute.
func (w *Worker) fill(b *batch, jobs []*job) (engine.Input, int) {
	if w.o.padding == PadStatic {
		w.fillStatic(b, jobs)
		return b.static, w.spec.Batch * w.spec.Seq
	}
	in := b.pack(jobs)
	return in, len(in.InputIDs)
}

// pack lays the jobs' real rows back to back (engine.Input with Lengths).
// The batch carries a mask only when some row has holes in its own.
func (b *batch) pack(jobs []*job) engine.Input {
	p := &b.packed
	p.ids, p.types, p.mask, p.lens = p.ids[:0], p.types[:0], p.mask[:0], p.lens[:0]
	holes := false
	for _, j := range jobs {
		p.ids = append(p.ids, j.row.ids[:j.n]...)
		p.types = append(p.types, j.row.types[:j.n]...)
		p.lens = append(p.lens, int32(j.n))
		holes = holes || j.holes
	}
	in := engine.Input{InputIDs: p.ids, TokenTypeIDs: p.types, Lengths: p.lens}
	if holes {
		for _, j := range jobs {
			p.mask = append(p.mask, j.row.mask[:j.n]...)
		}
		in.AttentionMask = p.mask
	}
	return in
}

// fillStatic copies the jobs' rows into the static batch and pads the
// remaining slots with dummy rows ([CLS] [SEP], attended) that nobody will
// read: the seed's layout.
func (w *Worker) fillStatic(b *batch, jobs []*job) {
	S := w.spec.Seq
	for slot := 0; slot < w.spec.Batch; slot++ {
		ids := b.static.InputIDs[slot*S : (slot+1)*S]
		types := b.static.TokenTypeIDs[slot*S : (slot+1)*S]
		mask := b.static.AttentionMask[slot*S : (slot+1)*S]
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
