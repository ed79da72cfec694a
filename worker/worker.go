package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/cpuset"
	"github.com/bertq/bertq/schemas"
)

// ServiceVersion is the worker's micro service version.
const ServiceVersion = "1.0.0"

// Worker serves one model from its JetStream work subject.
type Worker struct {
	nc    *nats.Conn
	js    jetstream.JetStream
	model engine.Model
	spec  engine.Spec
	info  Info
	shape schemas.Shape
	o     options
	log   zerolog.Logger

	cls, sep, pad int32

	consMu     sync.Mutex
	cons       jetstream.Consumer
	maxDeliver int
	ackWait    time.Duration

	limits    engine.Limits
	raw       chan jetstream.Msg // pulled, not yet decoded; closed when pulling has stopped
	ready     chan *job          // decoded, for the loops; closed after raw is done
	undecoded atomic.Int64       // messages queued in raw or being decoded
	done      chan *answered     // computed batches on their way to the replier
	leases    leases

	m       metrics
	started time.Time
	pins    []int // loop i's CPU, -1 for unpinned
}

// New prepares a worker for model on nc. WithInfo is required.
func New(nc *nats.Conn, model engine.Model, opts ...Option) (*Worker, error) {
	o := defaults()
	for _, fn := range opts {
		fn(&o)
	}
	if nc == nil || model == nil {
		return nil, fmt.Errorf("%w: a NATS connection and a model are required", ErrConfig)
	}
	if o.info == nil {
		return nil, fmt.Errorf("%w: WithInfo is required (see InfoFromArtifact)", ErrConfig)
	}
	info := *o.info
	spec := model.Spec()
	switch {
	case !schemas.ValidName(info.Name):
		return nil, fmt.Errorf("%w: model name %q: 1 to 64 of letters, digits, '-' and '_'", ErrConfig, info.Name)
	case info.Tokenizer == nil:
		return nil, fmt.Errorf("%w: no tokenizer", ErrConfig)
	case info.VocabSize <= 0 || info.TypeVocabSize <= 0:
		return nil, fmt.Errorf("%w: vocabulary sizes %d and %d", ErrConfig, info.VocabSize, info.TypeVocabSize)
	case info.Tokenizer.VocabSize() > info.VocabSize:
		return nil, fmt.Errorf("%w: the tokenizer has %d tokens, the model's embeddings %d", ErrConfig, info.Tokenizer.VocabSize(), info.VocabSize)
	case spec.Batch < 1 || spec.Seq < 3 || spec.Labels < 1:
		return nil, fmt.Errorf("%w: model spec %+v", ErrConfig, spec)
	case len(info.Labels) != 0 && len(info.Labels) != spec.Labels:
		return nil, fmt.Errorf("%w: %d label names for %d labels", ErrConfig, len(info.Labels), spec.Labels)
	case o.parallel < 1:
		return nil, fmt.Errorf("%w: parallel %d", ErrConfig, o.parallel)
	case o.fetchWait <= 0 || o.ackWait <= 0:
		return nil, fmt.Errorf("%w: fetch wait and ack wait must be positive", ErrConfig)
	case o.padding != PadNone && o.padding != PadStatic:
		return nil, fmt.Errorf("%w: pad %q: want %q or %q", ErrConfig, o.padding, PadNone, PadStatic)
	case o.prefetch < 0:
		return nil, fmt.Errorf("%w: prefetch %d", ErrConfig, o.prefetch)
	}
	limits, err := o.limits.Check(spec)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	o.fetchWait = max(o.fetchWait, time.Second) // the shortest pull JetStream takes
	pins, err := runnerCPUs(o)
	if err != nil {
		return nil, err
	}
	if o.maxAckPending <= 0 {
		o.maxAckPending = max(1024, 4*o.parallel*spec.Batch)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	w := &Worker{
		nc: nc, js: js, model: model, spec: spec, info: info, o: o, limits: limits, pins: pins,
		shape: schemas.Shape{Seq: spec.Seq, VocabSize: info.VocabSize, TypeVocabSize: info.TypeVocabSize},
		log:   o.log.With().Str("model", info.Name).Str("worker", o.id).Logger(),
	}
	var ok [3]bool
	w.cls, ok[0] = info.Tokenizer.TokenID("[CLS]")
	w.sep, ok[1] = info.Tokenizer.TokenID("[SEP]")
	w.pad, ok[2] = info.Tokenizer.TokenID("[PAD]")
	if !ok[0] || !ok[1] || !ok[2] {
		return nil, fmt.Errorf("%w: the vocabulary lacks [CLS], [SEP] or [PAD]", ErrConfig)
	}
	w.m.init()
	w.started = time.Now()
	return w, nil
}

// runnerCPUs is the CPU of each loop's runner (-1: unpinned): the chosen
// CPUs, or the affinity mask read at start, round-robin. A mask that cannot
// be read leaves the runners unpinned rather than guessing CPU numbers.
func runnerCPUs(o options) ([]int, error) {
	if !o.pin {
		return cpuset.Assign(nil, o.parallel), nil
	}
	allowed, err := cpuset.Allowed()
	if err != nil {
		if o.cpus != nil {
			return nil, fmt.Errorf("%w: cannot pin to CPUs %s: %v", ErrConfig, cpuset.Format(o.cpus), err)
		}
		o.log.Warn().Err(err).Msg("runners left unpinned")
		return cpuset.Assign(nil, o.parallel), nil
	}
	cpus := allowed
	if o.cpus != nil {
		if err := cpuset.Within(o.cpus, allowed); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
		cpus = o.cpus
	}
	return cpuset.Assign(cpus, o.parallel), nil
}

// pinsText shows the runners' CPUs in the start-up log line.
func pinsText(pins []int) string {
	if len(pins) > 0 && pins[0] < 0 {
		return "unpinned"
	}
	s := make([]string, len(pins))
	for i, c := range pins {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

// ID is the worker id carried in replies.
func (w *Worker) ID() string { return w.o.id }

// ConsumerConfig is the shared durable consumer this worker would create
// when none exists yet.
func (w *Worker) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       schemas.WorkerDurable(w.info.Name),
		Description:   "bertq workers of model " + w.info.Name,
		FilterSubject: schemas.WorkSubject(w.info.Name),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       w.o.ackWait,
		MaxDeliver:    w.o.maxDeliver,
		MaxAckPending: w.o.maxAckPending,
	}
}

// ensureConsumer creates the shared durable consumer, or adopts the one that
// exists: every worker of the model pulls from it, so one worker's options
// must not silently change the AckWait or MaxDeliver the others rely on. A
// setting this worker was given explicitly that differs from the consumer's
// is refused (ErrConsumerMismatch) unless WithUpdateConsumer allows changing
// it for all.
func (w *Worker) ensureConsumer(ctx context.Context) (jetstream.Consumer, error) {
	durable := schemas.WorkerDurable(w.info.Name)
	c, err := w.js.Consumer(ctx, schemas.InferStream, durable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		c, err = w.js.CreateConsumer(ctx, schemas.InferStream, w.ConsumerConfig())
		if errors.Is(err, jetstream.ErrConsumerExists) { // another worker was quicker
			c, err = w.js.Consumer(ctx, schemas.InferStream, durable)
		} else if err == nil {
			w.log.Info().Dur("ack_wait", w.o.ackWait).Int("max_deliver", w.o.maxDeliver).
				Int("max_ack_pending", w.o.maxAckPending).Msg("created the shared consumer")
			return w.useConsumer(c), nil
		}
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: stream %s does not exist: run `bertq provision`", ErrConsumer, schemas.InferStream)
		}
		return nil, fmt.Errorf("%w: %s: %v", ErrConsumer, durable, err)
	}
	have := c.CachedInfo().Config
	diff := w.consumerDiff(have)
	if len(diff) == 0 {
		w.log.Info().Dur("ack_wait", have.AckWait).Int("max_deliver", have.MaxDeliver).
			Int("max_ack_pending", have.MaxAckPending).Msg("adopted the shared consumer's settings")
		return w.useConsumer(c), nil
	}
	if !w.o.updateConsumer {
		return nil, fmt.Errorf("%w: %s: %s; every worker of model %s shares it", ErrConsumerMismatch,
			durable, strings.Join(diff, ", "), w.info.Name)
	}
	c, err = w.js.UpdateConsumer(ctx, schemas.InferStream, w.updatedConfig(have))
	if err != nil {
		return nil, fmt.Errorf("%w: updating %s: %v", ErrConsumer, durable, err)
	}
	w.log.Warn().Strs("changed", diff).Msg("updated the shared consumer's settings for every worker of the model")
	return w.useConsumer(c), nil
}

// consumerDiff lists how the existing consumer differs from what this worker
// needs: the settings it was given explicitly, and the subject and ack policy
// any bertq worker depends on.
func (w *Worker) consumerDiff(have jetstream.ConsumerConfig) []string {
	want := w.ConsumerConfig()
	var diff []string
	if have.FilterSubject != want.FilterSubject {
		diff = append(diff, fmt.Sprintf("filter subject is %q, this worker serves %q", have.FilterSubject, want.FilterSubject))
	}
	if have.AckPolicy != want.AckPolicy {
		diff = append(diff, fmt.Sprintf("ack policy is %s, workers need explicit acks", have.AckPolicy))
	}
	if w.o.set.ackWait && have.AckWait != want.AckWait {
		diff = append(diff, fmt.Sprintf("ack wait is %s, this worker asks %s", have.AckWait, want.AckWait))
	}
	if w.o.set.maxDeliver && have.MaxDeliver != want.MaxDeliver {
		diff = append(diff, fmt.Sprintf("max deliver is %d, this worker asks %d", have.MaxDeliver, want.MaxDeliver))
	}
	if w.o.set.maxAckPending && have.MaxAckPending != want.MaxAckPending {
		diff = append(diff, fmt.Sprintf("max ack pending is %d, this worker asks %d", have.MaxAckPending, want.MaxAckPending))
	}
	return diff
}

// updatedConfig is have with what this worker needs: its explicit settings
// change, the others keep the values other workers may have set.
func (w *Worker) updatedConfig(have jetstream.ConsumerConfig) jetstream.ConsumerConfig {
	want := w.ConsumerConfig()
	have.FilterSubject, have.AckPolicy = want.FilterSubject, want.AckPolicy
	if w.o.set.ackWait {
		have.AckWait = want.AckWait
	}
	if w.o.set.maxDeliver {
		have.MaxDeliver = want.MaxDeliver
	}
	if w.o.set.maxAckPending {
		have.MaxAckPending = want.MaxAckPending
	}
	return have
}

// useConsumer makes c the consumer the loops fetch from, with its settings.
func (w *Worker) useConsumer(c jetstream.Consumer) jetstream.Consumer {
	cfg := c.CachedInfo().Config
	w.consMu.Lock()
	w.cons, w.maxDeliver, w.ackWait = c, cfg.MaxDeliver, cfg.AckWait
	w.consMu.Unlock()
	return c
}

// followConsumer picks up settings another worker changed (with
// WithUpdateConsumer) since this one started, so that keep-alives and
// dead-lettering follow the consumer in force.
func (w *Worker) followConsumer(cfg jetstream.ConsumerConfig) {
	w.consMu.Lock()
	changed := cfg.AckWait != w.ackWait || cfg.MaxDeliver != w.maxDeliver
	w.ackWait, w.maxDeliver = cfg.AckWait, cfg.MaxDeliver
	w.consMu.Unlock()
	if changed {
		w.log.Warn().Dur("ack_wait", cfg.AckWait).Int("max_deliver", cfg.MaxDeliver).
			Msg("the shared consumer's settings changed; following them")
	}
}

func (w *Worker) consumer() (jetstream.Consumer, int, time.Duration) {
	w.consMu.Lock()
	defer w.consMu.Unlock()
	return w.cons, w.maxDeliver, w.ackWait
}

// Run serves until ctx is cancelled, then drains: it stops pulling, lets the
// fetches in flight end (at most the fetch wait), answers and acks every
// request it pulled, and returns. What it holds is bounded: the pull window
// (see WithPrefetch), a batch waiting for each loop, and the batches in hand.
func (w *Worker) Run(ctx context.Context) error {
	if _, err := w.ensureConsumer(ctx); err != nil {
		return err
	}
	runners := make([]engine.Runner, 0, w.o.parallel)
	defer func() {
		for _, r := range runners {
			r.Close()
		}
	}()
	for i, cpu := range w.pins {
		r, err := w.model.NewRunner(cpu)
		if err != nil {
			return fmt.Errorf("%w: runner %d on CPU %d: %v", ErrConfig, i, cpu, err)
		}
		runners = append(runners, r)
	}
	svc, err := w.addService()
	if err != nil {
		return err
	}
	defer svc.Stop()
	w.log.Info().Str("backend", w.model.Backend()).Int("parallel", w.o.parallel).Str("cpus", pinsText(w.pins)).
		Int("batch", w.spec.Batch).Int("seq", w.spec.Seq).Bool("synthetic", w.info.Synthetic).
		Str("pad", string(w.o.padding)).Int("max_batch", w.limits.Seqs).Int("max_tokens", w.limits.Tokens).
		Str("consumer", schemas.WorkerDurable(w.info.Name)).Msg("worker serving")

	statsDone := make(chan struct{})
	statsCtx, stopStats := context.WithCancel(context.Background())
	go func() { defer close(statsDone); w.statsLoop(statsCtx) }()
	leasesDone := make(chan struct{})
	go func() { defer close(leasesDone); w.renewLeases(statsCtx) }()

	// The pipeline: the pull queues requests in raw, the decoder decodes them
	// into ready, the loops batch and run them, the replier answers and acks;
	// each stage ends after the one before it, so that a drain answers
	// everything pulled.
	// A batch waiting decoded for every loop; one more being decoded.
	w.raw, w.ready = make(chan jetstream.Msg, w.limits.Seqs), make(chan *job, w.o.parallel*w.limits.Seqs)
	w.done = make(chan *answered, 2*len(runners))
	replied := make(chan struct{})
	go func() { defer close(replied); w.replier() }()
	go w.decoder()
	go w.pull(ctx)
	var wg sync.WaitGroup
	for _, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(r)
		}()
	}
	wg.Wait()
	close(w.done)
	<-replied
	stopStats()
	<-statsDone
	<-leasesDone
	// Replies and acks are buffered; make sure they left before returning.
	if err := w.nc.FlushTimeout(5 * time.Second); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
		w.log.Warn().Err(err).Msg("flush after drain")
	}
	w.log.Info().Uint64("answered", w.m.ok.Load()).Msg("worker drained")
	return nil
}

// addService registers the worker micro service with a stats handler.
func (w *Worker) addService() (micro.Service, error) {
	svc, err := micro.AddService(w.nc, micro.Config{
		Name:        schemas.WorkerService,
		Version:     ServiceVersion,
		Description: "bertq inference worker",
		Metadata: map[string]string{
			"model": w.info.Name, "worker": w.o.id, "backend": w.model.Backend(),
			"batch": strconv.Itoa(w.spec.Batch), "seq": strconv.Itoa(w.spec.Seq),
			"parallel": strconv.Itoa(w.o.parallel), "synthetic": strconv.FormatBool(w.info.Synthetic),
		},
		StatsHandler: func(*micro.Endpoint) any { return w.Stats() },
	})
	if err != nil {
		return nil, fmt.Errorf("%w: micro service: %v", ErrConfig, err)
	}
	err = svc.AddEndpoint("status", micro.HandlerFunc(func(req micro.Request) {
		req.RespondJSON(w.Stats())
	}), micro.WithEndpointSubject(schemas.WorkerStatusPrefix+w.info.Name), micro.WithEndpointQueueGroupDisabled())
	if err != nil {
		svc.Stop()
		return nil, fmt.Errorf("%w: micro endpoint: %v", ErrConfig, err)
	}
	return svc, nil
}
