package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/schemas"
)

// IntakeVersion is the intake's micro service version.
const IntakeVersion = "1.0.0"

// IntakeOption configures StartIntake.
type IntakeOption func(*intakeOptions)

type intakeOptions struct {
	log            zerolog.Logger
	publishTimeout time.Duration
	maxPending     int
	lookupTimeout  time.Duration
	// wrapLookup, for tests, wraps each bucket lookup of an unknown name.
	wrapLookup func(model string, lookup func(string) (bool, error)) (bool, error)
}

// WithIntakeLogger logs the intake's failures (default: none). Request
// payloads are never logged; ids are quoted and truncated.
func WithIntakeLogger(l zerolog.Logger) IntakeOption { return func(o *intakeOptions) { o.log = l } }

// WithPublishTimeout bounds the wait for JetStream's PubAck (default 5 s);
// past it the caller gets unavailable.
func WithPublishTimeout(d time.Duration) IntakeOption {
	return func(o *intakeOptions) { o.publishTimeout = d }
}

// WithMaxPending bounds publishes awaiting their PubAck (default 4096).
func WithMaxPending(n int) IntakeOption { return func(o *intakeOptions) { o.maxPending = n } }

// Intake is the request/reply front door: a micro service (schemas.IntakeService)
// with an endpoint on bert.infer.* and one on bert.compile that checks each
// request's envelope and enqueues it, carrying the caller's inbox in a header.
// The worker answers; the intake only answers when it cannot enqueue. It
// knows which models exist from a watch on the model bucket, so no request
// waits for a lookup (see models.go). The
// intake also dead-letters requests whose deliveries ran out unseen (a worker
// crashed on the last try), answering their callers.
type Intake struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	svc micro.Service
	o   intakeOptions
	log zerolog.Logger

	// pending maps each published *nats.Msg to its caller until the PubAck.
	pending sync.Map

	deadSub *nats.Subscription

	models      *modelSet
	stopWatch   context.CancelFunc
	watchDone   chan struct{}
	lookups     chan struct{} // a slot per confirmation in flight
	lookupFn    func(model string) (bool, error)
	lookupsMu   sync.Mutex // guards stopping and lookupsDone.Add against Stop's Wait
	stopping    bool
	lookupsDone sync.WaitGroup
	bucketMu    sync.Mutex
	bucket      jetstream.ObjectStore
}

// pendingReq is a request whose PubAck has not arrived yet.
type pendingReq struct {
	reply   string
	enc     schemas.Encoding
	id      string
	model   string // "" for a compile job
	name    string // compile job name
	compile bool
}

// StartIntake registers the intake service on nc. Several intakes may run
// side by side: the endpoints share a queue group. It first loads the model
// bucket's names (waiting up to the lookup timeout, 5 s; an unprovisioned
// server does not hold it up), then keeps following the bucket.
func StartIntake(nc *nats.Conn, opts ...IntakeOption) (*Intake, error) {
	o := intakeOptions{
		log: zerolog.Nop(), publishTimeout: 5 * time.Second, maxPending: 4096, lookupTimeout: 5 * time.Second,
	}
	for _, fn := range opts {
		fn(&o)
	}
	in := &Intake{nc: nc, o: o, log: o.log, models: newModelSet(), lookups: make(chan struct{}, maxLookups)}
	in.lookupFn = in.lookup
	if w := o.wrapLookup; w != nil {
		in.lookupFn = func(model string) (bool, error) { return w(model, in.lookup) }
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(o.maxPending),
		jetstream.WithPublishAsyncTimeout(o.publishTimeout),
		jetstream.WithPublishAsyncAckHandler(in.onAck),
		jetstream.WithPublishAsyncErrHandler(in.onPublishErr),
	)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIntake, err)
	}
	in.js = js
	in.startWatch()
	if err := in.register(); err != nil {
		in.stopWatching()
		return nil, err
	}
	// The endpoints' subscriptions must reach the server before callers are
	// told the intake serves; micro does not flush them itself.
	if err := nc.Flush(); err != nil {
		in.Stop()
		return nil, fmt.Errorf("%w: %v", ErrIntake, err)
	}
	return in, nil
}

// register adds the micro service with its endpoints and the dead-letter
// subscription.
func (in *Intake) register() error {
	svc, err := micro.AddService(in.nc, micro.Config{
		Name:        schemas.IntakeService,
		Version:     IntakeVersion,
		Description: "bertq intake: checks requests and queues them for the workers",
	})
	if err != nil {
		return fmt.Errorf("%w: %v", ErrIntake, err)
	}
	in.svc = svc
	if err := svc.AddEndpoint("infer", micro.HandlerFunc(in.handleInfer),
		micro.WithEndpointSubject(schemas.InferSubjectPrefix+"*"),
		micro.WithEndpointMetadata(map[string]string{"format": "schemas.InferRequest (JSON or msgpack)"})); err != nil {
		svc.Stop()
		return fmt.Errorf("%w: infer endpoint: %v", ErrIntake, err)
	}
	if err := svc.AddEndpoint("compile", micro.HandlerFunc(in.handleCompile),
		micro.WithEndpointSubject(schemas.CompileSubject),
		micro.WithEndpointMetadata(map[string]string{"format": "schemas.CompileJob (JSON or msgpack)"})); err != nil {
		svc.Stop()
		return fmt.Errorf("%w: compile endpoint: %v", ErrIntake, err)
	}
	if in.deadSub, err = in.startDeadLetters(); err != nil {
		svc.Stop()
		return fmt.Errorf("%w: dead-letter advisories: %v", ErrIntake, err)
	}
	return nil
}

// Service is the intake's micro service.
func (in *Intake) Service() micro.Service { return in.svc }

// Stop unregisters the service and waits for the model lookups in flight
// and (up to the publish timeout) for the PubAcks of requests already taken
// in, so that their failures still get a reply.
func (in *Intake) Stop() error {
	in.deadSub.Unsubscribe()
	err := in.svc.Stop()
	// The endpoints drain: a handler may still be running, and start a lookup.
	in.lookupsMu.Lock()
	in.stopping = true
	in.lookupsMu.Unlock()
	in.lookupsDone.Wait()
	in.stopWatching()
	select {
	case <-in.js.PublishAsyncComplete():
	case <-time.After(in.o.publishTimeout):
	}
	return err
}

// refuseReply reports (and logs) a request whose reply subject is not an
// inbox: it is neither queued nor answered, since an answer would be
// published with the intake's permissions wherever the caller aimed it.
func (in *Intake) refuseReply(req micro.Request) bool {
	r := req.Reply()
	if r == "" || schemas.ValidReplySubject(r) {
		return false
	}
	in.log.Warn().Str("subject", schemas.Clip(req.Subject(), 64)).Str("reply_to", schemas.Clip(r, 64)).
		Msg("request refused: its reply subject is not an inbox")
	return true
}

func (in *Intake) handleInfer(req micro.Request) {
	if in.refuseReply(req) {
		return
	}
	model := strings.TrimPrefix(req.Subject(), schemas.InferSubjectPrefix)
	enc := schemas.Detect(req.Headers().Get(schemas.HeaderContentType), req.Data())
	p := &pendingReq{reply: req.Reply(), enc: enc, model: model}
	id, data, e := schemas.EnsureID(enc, req.Data(), nuid.Next)
	if e != nil {
		in.replySync(req, p, e)
		return
	}
	p.id = id
	if !schemas.ValidName(model) {
		in.replySync(req, p, schemas.Errorf(schemas.CodeUnknownModel,
			"%q is not a model name: 1 to 64 of letters, digits, '-' and '_'", schemas.Clip(model, 80)))
		return
	}
	if in.models.has(model) {
		in.enqueue(p, schemas.WorkSubject(model), data, func(e *schemas.Error) { in.replySync(req, p, e) })
		return
	}
	in.confirm(p, model, data)
}

func (in *Intake) handleCompile(req micro.Request) {
	if in.refuseReply(req) {
		return
	}
	enc := schemas.Detect(req.Headers().Get(schemas.HeaderContentType), req.Data())
	p := &pendingReq{reply: req.Reply(), enc: enc, compile: true}
	id, data, e := schemas.EnsureID(enc, req.Data(), nuid.Next)
	if e != nil {
		in.replySync(req, p, e)
		return
	}
	p.id = id
	var job schemas.CompileJob
	if e := schemas.DecodeCompileJob(enc, data, &job); e != nil {
		p.name = schemas.Clip(job.Name, 64)
		in.replySync(req, p, e)
		return
	}
	p.name = job.Name
	in.enqueue(p, schemas.CompileWorkSubject, data, func(e *schemas.Error) { in.replySync(req, p, e) })
}

// enqueue publishes data to subject with the caller's inbox in a header; the
// PubAck (or its failure) arrives in onAck / onPublishErr. fail answers a
// publish refused at once.
func (in *Intake) enqueue(p *pendingReq, subject string, data []byte, fail func(*schemas.Error)) {
	m := nats.NewMsg(subject)
	m.Data = data
	if p.reply != "" {
		m.Header.Set(schemas.HeaderReplyTo, p.reply)
	}
	m.Header.Set(schemas.HeaderContentType, p.enc.ContentType())
	m.Header.Set(schemas.HeaderMsgID, p.id)
	m.Header.Set(schemas.HeaderEnqueued, time.Now().UTC().Format(time.RFC3339Nano))
	in.pending.Store(m, p)
	if _, err := in.js.PublishMsgAsync(m); err != nil {
		if _, ok := in.pending.LoadAndDelete(m); ok {
			in.log.Warn().Err(err).Str("id", schemas.Clip(p.id, 64)).Msg("enqueue failed")
			fail(publishError(err))
		}
	}
}

func (in *Intake) onAck(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	v, ok := in.pending.LoadAndDelete(m)
	if !ok || !ack.Duplicate {
		return
	}
	// The stream already holds a request with this id, whose answer went (or
	// goes) to that request's inbox: this caller would wait for nothing.
	p := v.(*pendingReq)
	in.replyAsync(p, schemas.Errorf(schemas.CodeDuplicate,
		"duplicate id %q: a request with this id was queued moments ago (de-duplication window); send a fresh id", schemas.Clip(p.id, 64)))
}

func (in *Intake) onPublishErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	v, ok := in.pending.LoadAndDelete(m)
	if !ok {
		return
	}
	p := v.(*pendingReq)
	e := publishError(err)
	if e.Code != schemas.CodeQueueFull {
		in.log.Warn().Err(err).Str("id", schemas.Clip(p.id, 64)).Msg("enqueue failed")
	}
	in.replyAsync(p, e)
}

// publishError maps a JetStream publish failure to a reply error.
func publishError(err error) *schemas.Error {
	msg := err.Error()
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		msg = apiErr.Description
	}
	switch {
	case strings.Contains(msg, "maximum messages exceeded"), strings.Contains(msg, "maximum bytes exceeded"),
		strings.Contains(msg, "maximum messages per subject exceeded"):
		return schemas.Errorf(schemas.CodeQueueFull, "queue full: the request queue is at its limit (%s); retry later", msg)
	case strings.Contains(msg, "message size exceeds maximum"):
		return schemas.Errorf(schemas.CodeBadRequest, "the request is larger than the queue accepts")
	case errors.Is(err, jetstream.ErrTooManyStalledMsgs):
		return schemas.Errorf(schemas.CodeUnavailable, "the intake is overloaded (too many requests awaiting the queue); retry later")
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders):
		// Also what a cluster says for the seconds it takes to elect a new
		// stream leader after losing a node, so the advice covers both.
		return schemas.Errorf(schemas.CodeUnavailable, "the request queue did not answer: it may be electing a leader (retry in a few seconds) or not provisioned (run `bertq provision`)")
	}
	return schemas.Errorf(schemas.CodeUnavailable, "could not enqueue the request: %s", schemas.Clip(msg, 200))
}

// errorReply encodes the error reply to p in the request's encoding.
func (in *Intake) errorReply(p *pendingReq, e *schemas.Error) ([]byte, nats.Header) {
	var v any
	if p.compile {
		v = &schemas.CompileResult{V: schemas.Version, ID: p.id, Name: p.name, Error: e}
	} else {
		v = &schemas.InferReply{V: schemas.Version, ID: p.id, Model: schemas.Clip(p.model, 64), Error: e}
	}
	body, err := schemas.Marshal(p.enc, v)
	if err != nil { // cannot happen with these types; answer in words anyway
		body = []byte(e.Error())
	}
	h := nats.Header{}
	h.Set(schemas.HeaderContentType, p.enc.ContentType())
	h.Set(schemas.HeaderErrorCode, e.Code)
	return body, h
}

// replySync answers from within the handler, so micro counts the error.
func (in *Intake) replySync(req micro.Request, p *pendingReq, e *schemas.Error) {
	if p.reply == "" {
		return
	}
	body, h := in.errorReply(p, e)
	if err := req.Error(e.Code, schemas.HeaderValue(e.Message), body, micro.WithHeaders(micro.Headers(h))); err != nil {
		in.log.Warn().Err(err).Msg("error reply failed")
	}
}

// replyAsync answers after the handler returned (PubAck callbacks, dead
// letters, whose reply subject comes from a header).
func (in *Intake) replyAsync(p *pendingReq, e *schemas.Error) {
	if p.reply == "" || !schemas.ValidReplySubject(p.reply) {
		return
	}
	body, h := in.errorReply(p, e)
	h.Set(micro.ErrorHeader, schemas.HeaderValue(e.Message))
	h.Set(micro.ErrorCodeHeader, e.Code)
	if err := in.nc.PublishMsg(&nats.Msg{Subject: p.reply, Data: body, Header: h}); err != nil {
		in.log.Warn().Err(err).Msg("error reply failed")
	}
}
