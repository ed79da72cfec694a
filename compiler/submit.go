package compiler

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/bertq/bertq/schemas"
)

// DefaultSubmitTimeout bounds the wait for a compile result: compiling and
// verifying BERT-Large takes minutes.
const DefaultSubmitTimeout = 10 * time.Minute

// SubmitOption configures Submit.
type SubmitOption func(*submitOptions)

type submitOptions struct {
	timeout time.Duration
	direct  bool
	enc     schemas.Encoding
}

// WithSubmitTimeout bounds the wait for the result (default 10 min).
func WithSubmitTimeout(d time.Duration) SubmitOption {
	return func(o *submitOptions) { o.timeout = d }
}

// WithSubmitDirect publishes the job straight into the compile stream
// (schemas.CompileWorkSubject, with Bertq-Reply-To) instead of through the
// intake on schemas.CompileSubject.
func WithSubmitDirect(on bool) SubmitOption { return func(o *submitOptions) { o.direct = on } }

// WithSubmitEncoding sends the job as JSON (default) or msgpack.
func WithSubmitEncoding(e schemas.Encoding) SubmitOption {
	return func(o *submitOptions) { o.enc = e }
}

// Submit sends a compile job and waits for its CompileResult. A job without
// an ID gets a fresh one. When the result carries an error, Submit returns
// the result and that *schemas.Error; errors before any result wrap
// ErrSubmit.
func Submit(ctx context.Context, nc *nats.Conn, job schemas.CompileJob, opts ...SubmitOption) (*schemas.CompileResult, error) {
	o := submitOptions{timeout: DefaultSubmitTimeout, enc: schemas.JSON}
	for _, f := range opts {
		f(&o)
	}
	if job.ID == "" {
		job.ID = nuid.Next()
	}
	if job.V == 0 {
		job.V = schemas.Version
	}
	data, err := schemas.Marshal(o.enc, &job)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSubmit, err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	msg := &nats.Msg{Header: nats.Header{}, Data: data}
	msg.Header.Set(schemas.HeaderContentType, o.enc.ContentType())

	var reply *nats.Msg
	if o.direct {
		inbox := nc.NewInbox()
		sub, err := nc.SubscribeSync(inbox)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSubmit, err)
		}
		defer sub.Unsubscribe()
		js, err := jetstream.New(nc)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrSubmit, err)
		}
		msg.Subject = schemas.CompileWorkSubject
		msg.Header.Set(schemas.HeaderReplyTo, inbox)
		msg.Header.Set(schemas.HeaderMsgID, job.ID)
		if _, err := js.PublishMsg(ctx, msg); err != nil {
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				return nil, fmt.Errorf("%w: no stream captures %s: is the broker running and provisioned?", ErrSubmit, schemas.CompileWorkSubject)
			}
			return nil, fmt.Errorf("%w: publishing job %s: %v", ErrSubmit, schemas.Clip(job.ID, 64), err)
		}
		if reply, err = sub.NextMsgWithContext(ctx); err != nil {
			return nil, fmt.Errorf("%w: waiting for the result of job %s: %v", ErrSubmit, schemas.Clip(job.ID, 64), err)
		}
	} else {
		msg.Subject = schemas.CompileSubject
		if reply, err = nc.RequestMsgWithContext(ctx, msg); err != nil {
			if errors.Is(err, nats.ErrNoResponders) {
				return nil, fmt.Errorf("%w: nothing serves %s: is the broker (intake) running?", ErrSubmit, schemas.CompileSubject)
			}
			return nil, fmt.Errorf("%w: job %s: %v", ErrSubmit, schemas.Clip(job.ID, 64), err)
		}
	}
	var res schemas.CompileResult
	enc := schemas.Detect(reply.Header.Get(schemas.HeaderContentType), reply.Data)
	if err := schemas.Unmarshal(enc, reply.Data, &res); err != nil {
		// A micro error reply carries its code in headers and no body.
		if code := reply.Header.Get(schemas.HeaderErrorCode); code != "" {
			r := &schemas.CompileResult{ID: job.ID, Name: job.Name, Error: schemas.Errorf(code, "%s", reply.Header.Get("Nats-Service-Error"))}
			return r, r.Error
		}
		return nil, fmt.Errorf("%w: undecodable result: %v", ErrSubmit, err)
	}
	if res.Error != nil {
		return &res, res.Error
	}
	return &res, nil
}
