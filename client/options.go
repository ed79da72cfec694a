package client

import (
	"time"

	"github.com/bertq/bertq/schemas"
)

// Encoding is a wire encoding of requests and replies.
type Encoding = schemas.Encoding

// Encodings.
const (
	JSON    = schemas.JSON
	Msgpack = schemas.Msgpack
)

// DefaultTimeout bounds a call whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// RetryBackoff spaces re-sends after an "unavailable" answer, e.g. while a
// cluster elects a new stream leader.
const RetryBackoff = 250 * time.Millisecond

// ackTimeout bounds the wait for a JetStream PubAck (nats.go's default API
// timeout); with WithRetry, the retry interval if shorter.
const ackTimeout = 5 * time.Second

// Option configures a Client.
type Option func(*options)

type options struct {
	enc         Encoding
	direct      bool
	timeout     time.Duration
	retry       time.Duration
	inboxPrefix string
	stray       func(*Reply, error)
}

func defaultOptions() options {
	return options{enc: JSON, timeout: DefaultTimeout}
}

// WithEncoding selects JSON (the default) or Msgpack for requests; replies
// come back in the same encoding.
func WithEncoding(e Encoding) Option { return func(o *options) { o.enc = e } }

// WithDirect publishes requests straight into the model's JetStream work
// subject (bertq.work.infer.<model>) with the reply inbox in the
// Bertq-Reply-To header, and checks the stream's PubAck, instead of
// requesting through the intake (bert.infer.<model>). It needs JetStream
// publish permission; it skips the intake's model check.
func WithDirect() Option { return func(o *options) { o.direct = true } }

// WithTimeout bounds calls whose context has no deadline (default
// DefaultTimeout). 0 lets such calls wait for ever, and their requests
// carry no deadline: they wait in the queue however long workers take.
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRetry re-sends a request, with the same id, when no answer came within
// d, or when the answer was "unavailable" (after RetryBackoff), until the
// call's deadline. Re-sending is safe: the stream de-duplicates by id
// (Nats-Msg-Id), and a "duplicate_id" answer to a re-send means an earlier
// copy is queued, so the call keeps waiting for its answer. 0 (the default)
// sends each request once.
func WithRetry(d time.Duration) Option { return func(o *options) { o.retry = d } }

// WithInboxPrefix sets the subject prefix replies come to: <prefix>.<token>,
// one token per call. The default is a fresh inbox under the connection's
// inbox prefix (nats.CustomInboxPrefix, else "_INBOX"). bertq services only
// reply to subjects under "_INBOX.".
func WithInboxPrefix(prefix string) Option { return func(o *options) { o.inboxPrefix = prefix } }

// WithStrayHandler calls h with every reply no call is waiting for: a second
// answer for a request (a redelivery after a worker failed), one that came
// after its call timed out or was cancelled, or one to an unknown inbox
// token. err is what ParseReply returned. h runs on the subscription's
// goroutine and must not block.
func WithStrayHandler(h func(r *Reply, err error)) Option { return func(o *options) { o.stray = h } }

// CallOption configures one call.
type CallOption func(*callOptions)

type callOptions struct {
	id string
}

// WithID gives the request's id (default: a fresh NUID). Ids are how the
// stream de-duplicates: a request sent twice with one id is queued once.
// At most schemas.MaxIDLen bytes of UTF-8.
func WithID(id string) CallOption { return func(o *callOptions) { o.id = id } }
