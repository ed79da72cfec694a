package broker

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/schemas"
)

// Provisioning defaults.
const (
	// DefaultMaxQueue bounds the inference queue: beyond it publishers are
	// refused (queue_full) rather than older requests dropped.
	DefaultMaxQueue = 100_000
	// DefaultDuplicates is the de-duplication window for Nats-Msg-Id.
	DefaultDuplicates = 2 * time.Minute
	// DefaultDeadMaxAge is how long dead letters are kept.
	DefaultDeadMaxAge = 7 * 24 * time.Hour
	// DefaultMaxCompileJobs bounds the compile queue.
	DefaultMaxCompileJobs = 1000
)

// ProvisionOption configures Provision.
type ProvisionOption func(*provisionOptions)

type provisionOptions struct {
	replicas    int
	maxMsgs     int64
	maxBytes    int64
	duplicates  time.Duration
	deadMaxAge  time.Duration
	deadMaxMsgs int64
	maxCompile  int64
	log         zerolog.Logger
	storage     jetstream.StorageType
}

// WithReplicas sets the replica count of every stream and bucket (cluster
// only; default 1).
func WithReplicas(n int) ProvisionOption { return func(o *provisionOptions) { o.replicas = n } }

// WithMaxQueue bounds the inference queue to n messages (default
// DefaultMaxQueue; -1 for no limit). A full queue refuses new requests.
func WithMaxQueue(n int64) ProvisionOption { return func(o *provisionOptions) { o.maxMsgs = n } }

// WithMaxQueueBytes bounds the inference queue in bytes (default -1, none).
func WithMaxQueueBytes(n int64) ProvisionOption { return func(o *provisionOptions) { o.maxBytes = n } }

// WithDuplicates sets the Nats-Msg-Id de-duplication window (default 2 min).
func WithDuplicates(d time.Duration) ProvisionOption {
	return func(o *provisionOptions) { o.duplicates = d }
}

// WithDeadLetters sets how long and how many dead letters are kept
// (defaults 7 days, 100 000; the oldest go first).
func WithDeadLetters(maxAge time.Duration, maxMsgs int64) ProvisionOption {
	return func(o *provisionOptions) { o.deadMaxAge, o.deadMaxMsgs = maxAge, maxMsgs }
}

// WithMaxCompileJobs bounds the compile queue (default 1000).
func WithMaxCompileJobs(n int64) ProvisionOption {
	return func(o *provisionOptions) { o.maxCompile = n }
}

// WithProvisionLogger logs one line per stream or bucket (default: none).
func WithProvisionLogger(l zerolog.Logger) ProvisionOption {
	return func(o *provisionOptions) { o.log = l }
}

// QueueStreamConfig is the inference work-queue stream as Provision makes it.
func QueueStreamConfig(opts ...ProvisionOption) jetstream.StreamConfig {
	o := provisionDefaults(opts)
	return o.queueStream()
}

func provisionDefaults(opts []ProvisionOption) provisionOptions {
	o := provisionOptions{
		replicas: 1, maxMsgs: DefaultMaxQueue, maxBytes: -1, duplicates: DefaultDuplicates,
		deadMaxAge: DefaultDeadMaxAge, deadMaxMsgs: 100_000, maxCompile: DefaultMaxCompileJobs,
		log: zerolog.Nop(), storage: jetstream.FileStorage,
	}
	for _, fn := range opts {
		fn(&o)
	}
	if o.replicas < 1 {
		o.replicas = 1
	}
	return o
}

func (o *provisionOptions) queueStream() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        schemas.InferStream,
		Description: "bertq inference requests, one subject per model",
		Subjects:    []string{schemas.WorkSubjectPrefix + ">"},
		Retention:   jetstream.WorkQueuePolicy,
		// DiscardNew: a full queue refuses the publisher, who is told
		// queue_full, instead of silently losing the oldest requests.
		Discard:    jetstream.DiscardNew,
		MaxMsgs:    o.maxMsgs,
		MaxBytes:   o.maxBytes,
		MaxAge:     0,
		Storage:    o.storage,
		Replicas:   o.replicas,
		Duplicates: o.duplicates,
		// Workers read by their consumer; AllowDirect serves `nats stream get`.
		AllowDirect: true,
	}
}

// Provision creates or updates, idempotently, bertq's streams (inference work
// queue, dead letters, compile jobs) and object store buckets (models,
// checkpoints). Running it again with the same options changes nothing;
// with other limits it updates them in place.
func Provision(ctx context.Context, js jetstream.JetStream, opts ...ProvisionOption) error {
	o := provisionDefaults(opts)
	streams := []jetstream.StreamConfig{
		o.queueStream(),
		{
			Name:        schemas.DeadStream,
			Description: "bertq inference requests that exhausted their deliveries",
			Subjects:    []string{schemas.DeadSubjectPrefix + ">"},
			Retention:   jetstream.LimitsPolicy,
			Discard:     jetstream.DiscardOld,
			MaxMsgs:     o.deadMaxMsgs,
			MaxBytes:    -1,
			MaxAge:      o.deadMaxAge,
			Storage:     o.storage,
			Replicas:    o.replicas,
			AllowDirect: true,
		},
		{
			Name:        schemas.CompileStream,
			Description: "bertq compile jobs",
			Subjects:    []string{schemas.CompileWorkSubject},
			Retention:   jetstream.WorkQueuePolicy,
			Discard:     jetstream.DiscardNew,
			MaxMsgs:     o.maxCompile,
			MaxBytes:    -1,
			Storage:     o.storage,
			Replicas:    o.replicas,
			Duplicates:  o.duplicates,
			AllowDirect: true,
		},
	}
	for _, cfg := range streams {
		s, err := js.CreateOrUpdateStream(ctx, cfg)
		if err != nil {
			return fmt.Errorf("%w: stream %s: %v", ErrProvision, cfg.Name, err)
		}
		info := s.CachedInfo()
		o.log.Info().Str("stream", cfg.Name).Strs("subjects", cfg.Subjects).
			Uint64("messages", info.State.Msgs).Int("replicas", cfg.Replicas).Msg("stream ready")
	}
	buckets := []jetstream.ObjectStoreConfig{
		{Bucket: schemas.ModelBucket, Description: "bertq compiled artifacts, by model name", Storage: o.storage, Replicas: o.replicas},
		{Bucket: schemas.CheckpointBucket, Description: "bertq uploaded checkpoints, <checkpoint>/<file>", Storage: o.storage, Replicas: o.replicas},
	}
	for _, cfg := range buckets {
		if _, err := js.CreateOrUpdateObjectStore(ctx, cfg); err != nil {
			return fmt.Errorf("%w: object store %s: %v", ErrProvision, cfg.Bucket, err)
		}
		o.log.Info().Str("bucket", cfg.Bucket).Int("replicas", cfg.Replicas).Msg("object store ready")
	}
	return nil
}
