package worker

import (
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/tokenizer"
)

// Info is what the worker needs to know of the artifact beyond its engine
// Model: names, labels, vocabularies and the tokenizer that goes with it.
type Info struct {
	// Name is the model name: the subject token requests arrive on.
	Name string
	// Labels names each class (index → name); empty names fall back to LABEL_i.
	Labels []string
	// Synthetic marks generated weights whose predictions are meaningless.
	Synthetic bool
	// VocabSize and TypeVocabSize bound pre-tokenized ids.
	VocabSize, TypeVocabSize int
	// Tokenizer encodes text requests (the artifact's own vocabulary).
	Tokenizer *tokenizer.Tokenizer
}

// InfoFromArtifact reads an Info from an opened artifact: its header and its
// embedded vocabulary. name is the model name it is served under.
func InfoFromArtifact(name string, f *artifact.File) (Info, error) {
	tok, err := engine.Tokenizer(f)
	if err != nil {
		return Info{}, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	c := f.Header.Model
	labels := make([]string, c.NumLabels)
	for i := range labels {
		labels[i] = c.Label(i)
	}
	return Info{
		Name: name, Labels: labels, Synthetic: f.Header.Synthetic,
		VocabSize: c.VocabSize, TypeVocabSize: c.TypeVocabSize, Tokenizer: tok,
	}, nil
}

// Option configures New.
type Option func(*options)

type options struct {
	info           *Info
	parallel       int
	log            zerolog.Logger
	id             string
	fetchWait      time.Duration
	ackWait        time.Duration
	maxDeliver     int
	maxAckPending  int
	retryDelay     time.Duration
	statsEvery     time.Duration
	pin            bool
	cpus           []int // nil: the process's affinity mask
	updateConsumer bool
	// set records the consumer settings given explicitly: only those are
	// compared with (or imposed on) the shared consumer.
	set      struct{ ackWait, maxDeliver, maxAckPending bool }
	limits   engine.Limits
	padding  Pad
	prefetch int
}

func defaults() options {
	host, _ := os.Hostname()
	if host == "" {
		host = "worker"
	}
	return options{
		parallel:   1,
		log:        zerolog.Nop(),
		id:         fmt.Sprintf("%s-%d", host, os.Getpid()),
		fetchWait:  time.Second,
		ackWait:    30 * time.Second,
		maxDeliver: 5,
		retryDelay: time.Second,
		statsEvery: time.Second,
		pin:        true,
		padding:    PadNone,
	}
}

// WithInfo gives the artifact's names, labels and tokenizer (required; see
// InfoFromArtifact).
func WithInfo(info Info) Option { return func(o *options) { o.info = &info } }

// WithParallel runs n batch loops, each with its own Runner (default 1).
func WithParallel(n int) Option { return func(o *options) { o.parallel = n } }

// WithLogger receives the worker's log: one line per second of throughput,
// and failures (default: none).
func WithLogger(l zerolog.Logger) Option { return func(o *options) { o.log = l } }

// WithID names this worker in replies, logs and metrics (default host-pid).
func WithID(id string) Option { return func(o *options) { o.id = id } }

// WithFetchWait sets how long one pull request waits on the server for
// requests before it ends and the worker sends another (default 1 s, at
// least 1 s): idle workers ask this often, a pull lost with a failed server
// is replaced within about this long, and a drain waits at most this long
// for the pulls in flight.
func WithFetchWait(d time.Duration) Option { return func(o *options) { o.fetchWait = d } }

// WithAckWait sets the shared consumer's AckWait (default 30 s); batches that
// run longer are kept alive with InProgress. The consumer is shared by every
// worker of the model: when it exists with another AckWait, Run fails with
// ErrConsumerMismatch unless WithUpdateConsumer. Without WithAckWait a worker
// adopts the consumer's.
func WithAckWait(d time.Duration) Option {
	return func(o *options) { o.ackWait, o.set.ackWait = d, true }
}

// WithMaxDeliver sets the shared consumer's MaxDeliver (default 5): after
// that many failed runs a request is dead-lettered. Shared like WithAckWait.
func WithMaxDeliver(n int) Option {
	return func(o *options) { o.maxDeliver, o.set.maxDeliver = n, true }
}

// WithMaxAckPending sets the shared consumer's MaxAckPending (default the
// larger of 1024 and 4 × parallel × batch). Shared like WithAckWait. The pull
// window stays within half of it.
func WithMaxAckPending(n int) Option {
	return func(o *options) { o.maxAckPending, o.set.maxAckPending = n, true }
}

// WithUpdateConsumer lets this worker's explicit consumer settings replace
// those of the existing shared consumer; running workers follow the change
// within a stats interval.
func WithUpdateConsumer(on bool) Option { return func(o *options) { o.updateConsumer = on } }

// WithRetryDelay sets the delay before a failed batch's requests are
// redelivered (default 1 s).
func WithRetryDelay(d time.Duration) Option { return func(o *options) { o.retryDelay = d } }

// WithStatsInterval sets the throughput log period (default 1 s; ≤ 0 disables
// the log line, not the metrics).
func WithStatsInterval(d time.Duration) Option { return func(o *options) { o.statsEvery = d } }

// Pad is how a batch is laid out for the engine.
type Pad string

// Pad values.
const (
	// PadNone packs each request's real tokens back to back (engine.Input
	// with Lengths): no padding, no dummy rows.
	PadNone Pad = "none"
	// PadStatic is the seed's layout: every request padded to the compiled
	// length, and a short batch filled with dummy rows up to the compiled
	// batch.
	PadStatic Pad = "static"
)

// WithPad picks the batch layout (default PadNone).
func WithPad(p Pad) Option { return func(o *options) { o.padding = p } }

// WithLimits bounds each batch: at most l.Seqs requests and, packed, l.Tokens
// tokens (zero fields: the artifact's batch, and batch × seq). A loop blocks
// for its first request, then takes what already waits while the next one
// fits (engine.Limits.Admits).
func WithLimits(l engine.Limits) Option { return func(o *options) { o.limits = l } }

// WithPrefetch fixes how many requests may be on their way from the server
// to the worker, beyond the batch waiting decoded for each loop. By default
// the worker sizes it from its engine's measured speed: about 50 ms of work,
// at least one batch per loop, so that a loop never waits on the network
// between batches while a slow engine does not hoard requests other workers
// could serve. Requests held this way are kept alive like the batch in hand.
func WithPrefetch(n int) Option { return func(o *options) { o.prefetch = n } }

// WithPinning turns pinning on or off (default on). On, loop i's Runner is
// pinned to the i-th CPU of WithCPUs' list (wrapping round), by default the
// CPUs of the process's affinity mask as it was at start; off, runners float.
func WithPinning(on bool) Option { return func(o *options) { o.pin = on } }

// WithCPUs pins the runners to these CPUs instead of the whole affinity mask
// (see internal/cpuset.Parse for the list syntax). Each must lie inside the
// mask, or New fails: pinning outside it would escape a taskset or cpuset.
func WithCPUs(cpus []int) Option {
	return func(o *options) { o.cpus = append([]int(nil), cpus...) }
}
