package client

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/nats-io/nuid"

	"github.com/bertq/bertq/schemas"
)

// Reply is a worker's answer: label, probabilities, logits, timings, batch
// size (see schemas.InferReply).
type Reply = schemas.InferReply

// Input is what a call classifies: a Text pair or pre-tokenized Tokens.
type Input interface {
	fill(*schemas.InferRequest)
}

// Text is a sentence pair; B may be empty.
type Text struct{ A, B string }

// Tokens is a pre-tokenized sequence of exactly the model's compiled length
// (a worker answers wrong_length otherwise).
type Tokens struct {
	InputIDs      []int32
	TokenTypeIDs  []int32
	AttentionMask []int32
}

func (t Text) fill(r *schemas.InferRequest) { r.A, r.B = t.A, t.B }

func (t Tokens) fill(r *schemas.InferRequest) {
	r.InputIDs, r.TokenTypeIDs, r.AttentionMask = t.InputIDs, t.TokenTypeIDs, t.AttentionMask
}

// Client calls bertq models over one NATS connection. It is safe for
// concurrent use; one Client serves any number of calls in flight, matching
// replies to calls on one wildcard inbox subscription, as nats.go's own
// request/reply does. Close it when done; it does not close the connection.
type Client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	o      options
	prefix string // ends with '.'
	sub    *nats.Subscription
	status chan nats.Status

	mu     sync.Mutex
	calls  map[string]*call // by inbox token
	next   uint64
	closed bool

	// pubs maps each published *nats.Msg to its call until the PubAck.
	pubs                   sync.Map
	started, resent, stray atomic.Uint64
}

// Stats counts a client's calls.
type Stats struct {
	Calls   uint64 // calls started
	Resends uint64 // requests sent again with the same id (WithRetry)
	Strays  uint64 // replies no call was waiting for (see WithStrayHandler)
	Pending int    // calls in flight now
}

// New makes a Client on nc and subscribes to its inbox.
func New(nc *nats.Conn, opts ...Option) (*Client, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: no NATS connection", ErrInvalidOption)
	}
	o := defaultOptions()
	for _, f := range opts {
		f(&o)
	}
	switch {
	case o.enc != JSON && o.enc != Msgpack:
		return nil, fmt.Errorf("%w: unknown encoding %d", ErrInvalidOption, o.enc)
	case o.timeout < 0 || o.retry < 0:
		return nil, fmt.Errorf("%w: negative timeout or retry interval", ErrInvalidOption)
	}
	prefix := o.inboxPrefix
	if prefix == "" {
		prefix = nc.NewInbox()
	}
	prefix = strings.TrimSuffix(prefix, ".") + "."
	if !schemas.ValidReplySubject(prefix + "x") {
		return nil, fmt.Errorf("%w: inbox prefix %q: bertq services only reply to literal subjects under %q", ErrInvalidOption, schemas.Clip(prefix, 80), schemas.InboxPrefix)
	}
	c := &Client{nc: nc, o: o, prefix: prefix, calls: map[string]*call{}}
	at := ackTimeout
	if o.retry > 0 {
		at = min(at, o.retry)
	}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncAckHandler(c.onAck),
		jetstream.WithPublishAsyncErrHandler(c.onPublishErr),
		jetstream.WithPublishAsyncTimeout(at))
	if err != nil {
		return nil, err
	}
	c.js = js
	if c.sub, err = nc.Subscribe(prefix+"*", c.onMsg); err != nil {
		return nil, err
	}
	// Replies may come in bursts of many batches: never drop them as a slow consumer.
	c.sub.SetPendingLimits(-1, 256<<20)
	// The server has the subscription before the first request, and so,
	// moments later, the rest of a cluster, where a worker may answer.
	if err := nc.Flush(); err != nil {
		c.sub.Unsubscribe()
		return nil, err
	}
	c.status = nc.StatusChanged(nats.CLOSED)
	go c.watch(c.status)
	return c, nil
}

// watch fails every call when the connection closes for good.
func (c *Client) watch(ch chan nats.Status) {
	for s := range ch {
		if s == nats.CLOSED {
			c.failAll(fmt.Errorf("%w: %w", ErrClosed, nats.ErrConnectionClosed))
			return
		}
	}
}

// Close unsubscribes the client's inbox; calls still waiting fail with
// ErrClosed. The connection stays open.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.nc.RemoveStatusListener(c.status)
	err := c.sub.Unsubscribe()
	if errors.Is(err, nats.ErrConnectionClosed) {
		err = nil
	}
	c.failAll(ErrClosed)
	return err
}

func (c *Client) failAll(err error) {
	c.mu.Lock()
	c.closed = true
	calls := make([]*call, 0, len(c.calls))
	for _, k := range c.calls {
		calls = append(calls, k)
	}
	c.mu.Unlock()
	for _, k := range calls {
		k.finish(nil, nil, err)
	}
}

// Stats returns the client's counters now.
func (c *Client) Stats() Stats {
	c.mu.Lock()
	n := len(c.calls)
	c.mu.Unlock()
	return Stats{Calls: c.started.Load(), Resends: c.resent.Load(), Strays: c.stray.Load(), Pending: n}
}

// Infer classifies the pair (a, b) with model and waits for the answer.
// The call's deadline is ctx's (else the client's WithTimeout); the request
// carries it, so a worker drops it once it passed. Failures are typed:
// errors.Is(err, ErrQueueFull), ErrTimeout, ErrNoResponders...
func (c *Client) Infer(ctx context.Context, model, a, b string, opts ...CallOption) (*Reply, error) {
	f, err := c.InferAsync(ctx, model, Text{A: a, B: b}, opts...)
	if err != nil {
		return nil, err
	}
	return f.Result()
}

// InferTokens is Infer for a pre-tokenized sequence.
func (c *Client) InferTokens(ctx context.Context, model string, t Tokens, opts ...CallOption) (*Reply, error) {
	f, err := c.InferAsync(ctx, model, t, opts...)
	if err != nil {
		return nil, err
	}
	return f.Result()
}

// InferAsync sends a request and returns at once; the Future resolves with
// the answer. Any number may be in flight. ctx bounds the call as in Infer:
// cancelling it abandons the call. Errors returned here are those found
// before sending (an invalid model name or id, a closed client).
func (c *Client) InferAsync(ctx context.Context, model string, in Input, opts ...CallOption) (*Future, error) {
	k, err := c.start(ctx, model, in, opts, c.o.direct, false, "")
	if err != nil {
		return nil, err
	}
	return &Future{k: k}, nil
}

// Enqueue publishes a request straight into the model's JetStream work
// subject and returns the stream's PubAck, without waiting for the answer,
// which a worker sends to replyTo (a subject under "_INBOX.", or "" for
// none). The request carries no deadline: it waits in the queue until a
// worker takes it. Use it for work that outlives the caller, collecting the
// answers on a subscription to replyTo with ParseReply. ctx (else
// WithTimeout) bounds the publish; WithRetry re-sends it, same id, until the
// PubAck. A PubAck with Duplicate set means the stream already held the id.
func (c *Client) Enqueue(ctx context.Context, model string, in Input, replyTo string, opts ...CallOption) (*jetstream.PubAck, error) {
	if replyTo != "" && !schemas.ValidReplySubject(replyTo) {
		return nil, fmt.Errorf("%w: reply subject %q: bertq workers only reply to literal subjects under %q", ErrInvalidOption, schemas.Clip(replyTo, 80), schemas.InboxPrefix)
	}
	k, err := c.start(ctx, model, in, opts, true, true, replyTo)
	if err != nil {
		return nil, err
	}
	<-k.done
	return k.ack, k.err
}

// Future is a call in flight, from InferAsync.
type Future struct{ k *call }

// ID is the request's id.
func (f *Future) ID() string { return f.k.id }

// Done is closed when the call has its outcome.
func (f *Future) Done() <-chan struct{} { return f.k.done }

// Result waits for the outcome: the answer, or an error as Infer returns.
func (f *Future) Result() (*Reply, error) {
	<-f.k.done
	return f.k.reply, f.k.err
}

// start checks, encodes and sends a request.
func (c *Client) start(ctx context.Context, model string, in Input, opts []CallOption, direct, enqueue bool, replyTo string) (*call, error) {
	var co callOptions
	for _, f := range opts {
		f(&co)
	}
	if in == nil {
		return nil, fmt.Errorf("%w: no input", ErrInvalidOption)
	}
	id := co.id
	if id == "" {
		id = nuid.Next()
	}
	if err := checkCall(model, id); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bertq: request %q not sent: %w", schemas.Clip(id, 64), err)
	}
	k := &call{c: c, id: id, model: model, direct: direct, enqueue: enqueue, done: make(chan struct{})}
	if d, ok := ctx.Deadline(); ok {
		k.deadline, k.ctxDeadline = d, true
	} else if c.o.timeout > 0 {
		k.deadline = time.Now().Add(c.o.timeout)
	}
	req := schemas.InferRequest{V: schemas.Version, ID: id, Model: model}
	in.fill(&req)
	if !enqueue && !k.deadline.IsZero() {
		req.Deadline = k.deadline.UTC()
	}
	var err error
	if k.data, err = schemas.Marshal(c.o.enc, &req); err != nil {
		return nil, fmt.Errorf("bertq: encoding request %q: %w", schemas.Clip(id, 64), err)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	c.next++
	k.token = strconv.FormatUint(c.next, 36)
	c.calls[k.token] = k
	c.mu.Unlock()
	k.replyTo = replyTo
	if !enqueue {
		k.replyTo = c.prefix + k.token
	}
	c.started.Add(1)
	stop := context.AfterFunc(ctx, func() { k.ctxDone(ctx) })
	k.mu.Lock()
	k.stopCtx = stop
	k.mu.Unlock()
	k.send()
	return k, nil
}

// checkCall refuses what a bertq service would refuse anyway, before sending.
func checkCall(model, id string) error {
	switch {
	case !schemas.ValidName(model):
		return &Error{Code: schemas.CodeUnknownModel, ID: id, Message: fmt.Sprintf("%q is not a model name: 1 to 64 of letters, digits, '-' and '_'", schemas.Clip(model, 80))}
	case len(id) > schemas.MaxIDLen:
		return &Error{Code: schemas.CodeBadRequest, ID: schemas.Clip(id, 64), Message: fmt.Sprintf("id is %d bytes long, at most %d are allowed", len(id), schemas.MaxIDLen)}
	case !utf8.ValidString(id):
		return &Error{Code: schemas.CodeInvalidUTF8, Message: "id is not valid UTF-8"}
	}
	return nil
}

// publish sends attempt n of call k.
func (c *Client) publish(k *call, n int) error {
	msg := nats.NewMsg(schemas.InferSubject(k.model))
	msg.Data = k.data
	msg.Header.Set(schemas.HeaderContentType, c.o.enc.ContentType())
	if !k.direct {
		msg.Reply = k.replyTo
		return c.nc.PublishMsg(msg)
	}
	msg.Subject = schemas.WorkSubject(k.model)
	if k.replyTo != "" {
		msg.Header.Set(schemas.HeaderReplyTo, k.replyTo)
	}
	msg.Header.Set(schemas.HeaderMsgID, k.id)
	var popts []jetstream.PublishOpt
	if c.o.retry > 0 {
		// The call re-sends by itself; nats.go's own re-tries on "no
		// responders" would only overlap with those.
		popts = append(popts, jetstream.WithRetryAttempts(0))
	}
	c.pubs.Store(msg, pubRef{k, n})
	if _, err := c.js.PublishMsgAsync(msg, popts...); err != nil {
		c.pubs.Delete(msg)
		return err
	}
	return nil
}

// pubRef is attempt n of a call, awaiting its PubAck.
type pubRef struct {
	k *call
	n int
}

func (c *Client) onAck(_ jetstream.JetStream, m *nats.Msg, ack *jetstream.PubAck) {
	if v, ok := c.pubs.LoadAndDelete(m); ok {
		r := v.(pubRef)
		r.k.onAck(ack, r.n)
	}
}

func (c *Client) onPublishErr(_ jetstream.JetStream, m *nats.Msg, err error) {
	if v, ok := c.pubs.LoadAndDelete(m); ok {
		r := v.(pubRef)
		r.k.onPublishError(err, r.n)
	}
}

// onMsg takes every message on the inbox.
func (c *Client) onMsg(m *nats.Msg) {
	token := m.Subject[len(c.prefix):]
	c.mu.Lock()
	k := c.calls[token]
	c.mu.Unlock()
	rep, err := ParseReply(m)
	if k != nil && errors.Is(err, ErrNoResponders) {
		err = noResponders(schemas.InferSubject(k.model))
	}
	if k == nil || (rep != nil && rep.ID != "" && rep.ID != k.id) || !k.onReply(rep, err) {
		c.stray.Add(1)
		if c.o.stray != nil {
			c.o.stray(rep, err)
		}
	}
}

// ParseReply decodes a reply as bertq's services send it, in JSON or msgpack.
// An error reply returns the reply (its ID, Model) and an *Error that
// matches its code's sentinel; a "no responders" status returns
// ErrNoResponders; anything else that does not decode returns ErrBadReply.
func ParseReply(m *nats.Msg) (*Reply, error) {
	if m.Header.Get("Status") == "503" && len(m.Data) == 0 {
		return nil, noResponders(m.Subject)
	}
	var r Reply
	enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
	if err := schemas.Unmarshal(enc, m.Data, &r); err != nil {
		// An error reply of a micro endpoint may have only headers.
		code := m.Header.Get(schemas.HeaderErrorCode)
		if code == "" {
			code = m.Header.Get(micro.ErrorCodeHeader)
		}
		if code != "" {
			return nil, &Error{Code: code, Message: m.Header.Get(micro.ErrorHeader)}
		}
		return nil, fmt.Errorf("%w: %w", ErrBadReply, err)
	}
	if r.Error != nil {
		return &r, newError(r.ID, r.Error)
	}
	return &r, nil
}
