package producer

import (
	"io"
	"time"

	"github.com/bertq/bertq/schemas"
	"github.com/rs/zerolog"
)

// Defaults: the seed's load, 48 clients × 128 requests.
const (
	DefaultClients = 48
	DefaultCycle   = 128
	DefaultTimeout = 60 * time.Second
	// DefaultLinger is how long Run keeps listening after the last client
	// finished, to count duplicate and late replies.
	DefaultLinger = 250 * time.Millisecond
)

// Option configures Run, Backlog and StartCollect.
type Option func(*options)

type options struct {
	model    string
	clients  int
	cycle    int
	pairs    []Pair
	timeout  time.Duration
	linger   time.Duration
	retry    time.Duration
	direct   bool
	enc      schemas.Encoding
	log      zerolog.Logger
	progress io.Writer
	every    time.Duration
	runID    string
}

func newOptions(opts []Option) options {
	o := options{
		clients: DefaultClients,
		cycle:   DefaultCycle,
		timeout: DefaultTimeout,
		linger:  DefaultLinger,
		enc:     schemas.JSON,
		log:     zerolog.Nop(),
		every:   time.Second,
	}
	for _, f := range opts {
		f(&o)
	}
	if o.pairs == nil {
		o.pairs = Sample()
	}
	return o
}

// WithModel names the model to load (required by Run and Backlog).
func WithModel(name string) Option { return func(o *options) { o.model = name } }

// WithClients sets the number of concurrent clients (default 48).
func WithClients(n int) Option { return func(o *options) { o.clients = n } }

// WithCycle sets how many requests each client sends in turn (default 128).
func WithCycle(n int) Option { return func(o *options) { o.cycle = n } }

// WithPairs sets the labelled pairs to send (default: Sample()).
func WithPairs(p []Pair) Option { return func(o *options) { o.pairs = p } }

// WithTimeout bounds the wait for each reply in Run, and the whole collection
// in a Collector (default 60 s).
func WithTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithLinger sets how long Run listens for stray replies after the last
// client finished (default 250 ms).
func WithLinger(d time.Duration) Option { return func(o *options) { o.linger = d } }

// WithRetry makes each client re-send a request, with the same id, when no
// reply came within d or the reply was "unavailable" (a queue that was
// electing a leader, an intake that died holding it), until the request's
// timeout. Re-sending the same id is safe: the stream de-duplicates it, and the
// intake's "duplicate_id" answer means an earlier copy is queued, so the
// client keeps waiting. 0 (the default) sends each request once.
func WithRetry(d time.Duration) Option { return func(o *options) { o.retry = d } }

// WithDirect publishes straight into the JetStream work subject (PubAck as
// the receipt) instead of requesting through the intake.
func WithDirect(on bool) Option { return func(o *options) { o.direct = on } }

// WithEncoding selects JSON (default) or msgpack requests.
func WithEncoding(e schemas.Encoding) Option { return func(o *options) { o.enc = e } }

// WithLogger sets the structured logger (default: none).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithProgress prints a progress line to w every second while running.
func WithProgress(w io.Writer) Option { return func(o *options) { o.progress = w } }

// withProgressEvery shortens the progress period in tests.
func withProgressEvery(d time.Duration) Option { return func(o *options) { o.every = d } }

// WithRunID fixes the run id instead of a random one. It must be 10
// characters of [a-z0-9] (see RunID for the scheme).
func WithRunID(id string) Option { return func(o *options) { o.runID = id } }
