package compiler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/checkpoint"
	"github.com/bertq/bertq/schemas"
)

// Sentinel errors of the compile service, Upload and Submit.
var (
	// ErrService: the compile service cannot start (no stream, no consumer).
	ErrService = errors.New("compile service")
	// ErrUpload: a checkpoint could not be uploaded.
	ErrUpload = errors.New("checkpoint upload failed")
	// ErrSubmit: a compile job got no result (no intake, timeout, bad reply).
	ErrSubmit = errors.New("compile job submission failed")
)

// Object metadata keys of an artifact in schemas.ModelBucket.
const (
	MetaDigest    = "digest"    // hex SHA-256 from the artifact footer
	MetaPrecision = "precision" // bf16, fp32 or int8
	MetaBatch     = "batch"
	MetaSeq       = "seq"
	MetaSource    = "source" // the job's source, e.g. checkpoint:tiny
	MetaSynthetic = "synthetic"
	MetaJobID     = "job_id"
)

// Service defaults.
const (
	// DefaultAckWait is the compile consumer's AckWait; the service extends
	// it with InProgress every DefaultHeartbeat while a job runs.
	DefaultAckWait   = time.Minute
	DefaultHeartbeat = 15 * time.Second
	// DefaultMaxDeliver bounds redeliveries of a job that failed for want of
	// NATS (download, upload); its last attempt replies "unavailable".
	DefaultMaxDeliver = 5
	retryDelay        = 5 * time.Second
)

// ServiceOption configures Serve.
type ServiceOption func(*serviceOptions)

type serviceOptions struct {
	workDir   string
	log       zerolog.Logger
	heartbeat time.Duration
	fetchWait time.Duration
	backend   string
	verify    bool
	retry     time.Duration
	before    func() // test hook: runs before each compile
}

// WithWorkDir sets where checkpoints are downloaded and artifacts built
// (default: the system temp dir).
func WithWorkDir(dir string) ServiceOption { return func(o *serviceOptions) { o.workDir = dir } }

// WithServiceLogger sets the structured logger (default: none).
func WithServiceLogger(l zerolog.Logger) ServiceOption { return func(o *serviceOptions) { o.log = l } }

// WithHeartbeat sets how often a running job tells JetStream it is in
// progress (default 15 s; keep it well under DefaultAckWait).
func WithHeartbeat(d time.Duration) ServiceOption { return func(o *serviceOptions) { o.heartbeat = d } }

// WithVerifyBackend names the engine backend that verifies artifacts
// (default "auto").
func WithVerifyBackend(name string) ServiceOption {
	return func(o *serviceOptions) { o.backend = name }
}

// withFetchWait and withRetryDelay shorten waits in tests.
func withFetchWait(d time.Duration) ServiceOption  { return func(o *serviceOptions) { o.fetchWait = d } }
func withRetryDelay(d time.Duration) ServiceOption { return func(o *serviceOptions) { o.retry = d } }
func withBeforeCompile(f func()) ServiceOption     { return func(o *serviceOptions) { o.before = f } }

// ConsumerConfig is the compile workers' shared durable pull consumer.
func ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       schemas.CompilerDurable,
		Description:   "bertq compile workers",
		FilterSubject: schemas.CompileWorkSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       DefaultAckWait,
		MaxDeliver:    DefaultMaxDeliver,
		// Each worker fetches one job at a time (a compile holds gigabytes);
		// this caps the jobs in flight across all workers.
		MaxAckPending: 64,
	}
}

type service struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	o          serviceOptions
	maxDeliver int
}

// Serve runs a compile worker until ctx ends: it takes CompileJobs one at a
// time from the durable consumer schemas.CompilerDurable on
// schemas.CompileStream (creating it with ConsumerConfig if it does not
// exist), compiles them,
// stores the artifacts in schemas.ModelBucket under the job's name and
// replies to each job's Bertq-Reply-To with a CompileResult. Invalid jobs
// get bad_compile_job, jobs whose source cannot be loaded or compiled
// compile_failed; both are terminated, not retried. Several workers may
// share the consumer.
func Serve(ctx context.Context, nc *nats.Conn, opts ...ServiceOption) error {
	o := serviceOptions{log: zerolog.Nop(), heartbeat: DefaultHeartbeat, fetchWait: 5 * time.Second, backend: "auto", verify: true, retry: retryDelay}
	for _, f := range opts {
		f(&o)
	}
	if o.workDir == "" {
		o.workDir = os.TempDir()
	}
	if err := os.MkdirAll(o.workDir, 0o750); err != nil {
		return fmt.Errorf("%w: work dir: %v", ErrService, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrService, err)
	}
	s := &service{nc: nc, js: js, o: o, maxDeliver: DefaultMaxDeliver}
	cons, err := s.consumer(ctx)
	if err != nil {
		return err
	}
	o.log.Info().Str("stream", schemas.CompileStream).Str("consumer", schemas.CompilerDurable).Str("work_dir", o.workDir).Msg("compile service ready")
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, o.fetchWait)
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err != nil {
			cancel()
			o.log.Warn().Err(err).Msg("fetching compile jobs")
			sleep(ctx, time.Second)
			if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
				// Re-provisioned under us: find or make the consumer again.
				if c, cerr := s.consumer(ctx); cerr == nil {
					cons = c
				}
			}
			continue
		}
		for msg := range batch.Messages() {
			s.handle(ctx, msg)
		}
		err = batch.Error()
		cancel()
		if err != nil && ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			o.log.Warn().Err(err).Msg("fetching compile jobs")
			sleep(ctx, time.Second)
		}
	}
	o.log.Info().Msg("compile service stopped")
	return nil
}

// consumer finds the shared compile consumer, creating it with
// ConsumerConfig if absent. An existing one is used as it is, so an operator
// may tune it.
func (s *service) consumer(ctx context.Context) (jetstream.Consumer, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cons, err := s.js.Consumer(cctx, schemas.CompileStream, schemas.CompilerDurable)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		cons, err = s.js.CreateOrUpdateConsumer(cctx, schemas.CompileStream, ConsumerConfig())
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("%w: stream %s not found: run the broker (bertq broker) or provision it (bertq provision) first", ErrService, schemas.CompileStream)
		}
		return nil, fmt.Errorf("%w: consumer %s: %v", ErrService, schemas.CompilerDurable, err)
	}
	if md := cons.CachedInfo().Config.MaxDeliver; md > 0 {
		s.maxDeliver = md
	}
	return cons, nil
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// jobError is a job's failure: a reply code, and whether a later delivery
// may succeed (NATS trouble) rather than certainly fail the same way.
type jobError struct {
	code      string
	msg       string
	transient bool
}

func (e *jobError) Error() string { return e.code + ": " + e.msg }

func badJob(format string, a ...any) *jobError {
	return &jobError{code: schemas.CodeBadCompileJob, msg: fmt.Sprintf(format, a...)}
}

func failed(err error) *jobError {
	return &jobError{code: schemas.CodeCompileFailed, msg: err.Error()}
}

func transient(format string, a ...any) *jobError {
	return &jobError{code: schemas.CodeUnavailable, msg: fmt.Sprintf(format, a...), transient: true}
}

// handle runs one job to its reply and acknowledgement.
func (s *service) handle(ctx context.Context, msg jetstream.Msg) {
	start := time.Now()
	log := s.o.log
	h := msg.Headers()
	replyTo := h.Get(schemas.HeaderReplyTo)
	enc := schemas.Detect(h.Get(schemas.HeaderContentType), msg.Data())
	delivered := uint64(1)
	if md, err := msg.Metadata(); err == nil {
		delivered = md.NumDelivered
	}

	if replyTo != "" && !schemas.ValidReplySubject(replyTo) {
		// The compile worker may write the model bucket: never publish a
		// result where the job aimed it, only to inboxes.
		log.Warn().Str("reply_to", schemas.Clip(replyTo, 64)).Msg("compile job refused: its reply subject is not an inbox")
		s.finish(msg, "", enc, &schemas.CompileResult{Error: schemas.Errorf(schemas.CodeBadCompileJob, "reply subject is not an inbox")}, false)
		return
	}
	var job schemas.CompileJob
	if e := schemas.DecodeCompileJob(enc, msg.Data(), &job); e != nil {
		// Undecodable (bad_encoding), wrong types, bad id, name or no source.
		log.Warn().Str("code", e.Code).Str("error", schemas.Clip(e.Message, 300)).Msg("invalid compile job")
		res := &schemas.CompileResult{V: schemas.Version, ID: schemas.PeekID(enc, msg.Data()), Name: schemas.Clip(job.Name, 64), Error: e}
		s.finish(msg, replyTo, enc, res, false)
		return
	}
	log = log.With().Str("job", schemas.Clip(job.ID, 64)).Str("name", schemas.Clip(job.Name, 64)).Logger()
	log.Info().Str("source", schemas.Clip(job.Source, 80)).Int("batch", job.Batch).Int("seq", job.Seq).
		Str("precision", schemas.Clip(job.Precision, 16)).Uint64("delivery", delivered).Msg("compile job received")

	// Keep the job ours while it runs: compiles outlast AckWait.
	hbCtx, cancelHB := context.WithCancel(ctx)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		t := time.NewTicker(s.o.heartbeat)
		defer t.Stop()
		for {
			select {
			case <-hbCtx.Done():
				return
			case <-t.C:
				msg.InProgress()
			}
		}
	}()
	// stopHB ends the heartbeat before the job is acked or nakked.
	stopHB := func() { cancelHB(); <-hbDone }
	defer cancelHB()

	res := &schemas.CompileResult{V: schemas.Version, ID: job.ID, Name: job.Name}
	r, jerr := s.run(ctx, &job)
	stopHB()
	if jerr != nil && ctx.Err() != nil {
		// Shutting down mid-job: let another worker have it at once.
		msg.Nak()
		log.Warn().Msg("compile job abandoned: shutting down")
		return
	}
	if jerr != nil {
		if jerr.transient && delivered < uint64(s.maxDeliver) {
			log.Warn().Str("error", schemas.Clip(jerr.msg, 300)).Uint64("delivery", delivered).Msg("compile job failed; will retry")
			msg.NakWithDelay(s.o.retry)
			return
		}
		res.Error = schemas.Errorf(jerr.code, "%s", jerr.msg)
		res.ElapsedMS = msSince(start)
		log.Warn().Str("code", jerr.code).Str("error", schemas.Clip(jerr.msg, 300)).Msg("compile job failed")
		s.finish(msg, replyTo, enc, res, false)
		return
	}
	res.Digest, res.Size = r.Digest, r.Size
	if v := r.Header.Verification; v != nil {
		res.MaxAbsLogitDiff = v.MaxAbsLogitDiff
	}
	res.ElapsedMS = msSince(start)
	log.Info().Str("digest", res.Digest).Int64("size", res.Size).Float64("max_abs_logit_diff", res.MaxAbsLogitDiff).
		Float64("elapsed_ms", res.ElapsedMS).Msg("compile job done")
	s.finish(msg, replyTo, enc, res, true)
}

func msSince(t time.Time) float64 { return float64(time.Since(t)) / float64(time.Millisecond) }

// finish replies, then acknowledges a success or terminates a failure (a
// redelivery would fail the same way).
func (s *service) finish(msg jetstream.Msg, replyTo string, enc schemas.Encoding, res *schemas.CompileResult, ok bool) {
	if replyTo != "" {
		data, err := schemas.Marshal(enc, res)
		if err == nil {
			out := &nats.Msg{Subject: replyTo, Header: nats.Header{}, Data: data}
			out.Header.Set(schemas.HeaderContentType, enc.ContentType())
			if res.Error != nil {
				out.Header.Set(schemas.HeaderErrorCode, res.Error.Code)
			}
			err = s.nc.PublishMsg(out)
		}
		if err != nil {
			s.o.log.Error().Err(err).Msg("replying to a compile job")
		}
	}
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := msg.DoubleAck(ctx); err != nil {
			s.o.log.Error().Err(err).Msg("acknowledging a compile job")
		}
		return
	}
	reason := ""
	if res.Error != nil {
		reason = res.Error.Code
	}
	if err := msg.TermWithReason(reason); err != nil {
		s.o.log.Error().Err(err).Msg("terminating a compile job")
	}
}

// validate checks what can be checked before loading anything.
func validate(job *schemas.CompileJob) *jobError {
	switch {
	case !schemas.ValidName(job.Name):
		return badJob("name %q: want 1-64 of [A-Za-z0-9_-]", schemas.Clip(job.Name, 80))
	case job.Source == "":
		return badJob("missing source: want synthetic:bert-large or checkpoint:<name>")
	case job.Batch < 1 || job.Batch > artifact.MaxBatch:
		return badJob("batch %d out of range 1..%d", job.Batch, artifact.MaxBatch)
	case job.Seq < 3 || job.Seq > artifact.MaxSeq:
		return badJob("seq %d out of range 3..the model's max_position_embeddings", job.Seq)
	}
	if checkpoint.IsSynthetic(job.Source) {
		// The generator's config is known: refuse a too-long seq before
		// generating 1.3 GB of weights.
		if job.Source == "synthetic:bert-large" && job.Seq > bert.Large().MaxPositions {
			return badJob("seq %d out of range 3..%d (the model's max_position_embeddings)", job.Seq, bert.Large().MaxPositions)
		}
	} else if ck, ok := strings.CutPrefix(job.Source, "checkpoint:"); !ok || !schemas.ValidName(ck) {
		return badJob("source %q: want synthetic:bert-large or checkpoint:<name> (a name given to bertq upload)", schemas.Clip(job.Source, 80))
	}
	if job.Precision != "" {
		if _, err := artifact.ParsePrecision(job.Precision); err != nil {
			return badJob("%s", schemas.Clip(err.Error(), 120))
		}
	}
	switch job.GELU {
	case "", "auto", "exact", "tanh", "crude":
	default:
		return badJob("gelu %q: want auto, exact, tanh or crude", schemas.Clip(job.GELU, 40))
	}
	return nil
}

// run compiles a valid job and stores its artifact.
func (s *service) run(ctx context.Context, job *schemas.CompileJob) (*Result, *jobError) {
	if e := validate(job); e != nil {
		return nil, e
	}
	dir, err := os.MkdirTemp(s.o.workDir, "bertq-compile-*")
	if err != nil {
		return nil, transient("work dir: %v", err)
	}
	defer os.RemoveAll(dir)

	var src Source
	if checkpoint.IsSynthetic(job.Source) {
		src, err = LoadSource(job.Source)
		if err != nil {
			if errors.Is(err, checkpoint.ErrUnknownSynthetic) {
				return nil, badJob("%s", schemas.Clip(err.Error(), 300))
			}
			return nil, failed(err)
		}
	} else {
		ck := strings.TrimPrefix(job.Source, "checkpoint:")
		ckDir := filepath.Join(dir, "checkpoint")
		if e := s.download(ctx, ck, ckDir, job.Seq); e != nil {
			return nil, e
		}
		if src, err = LoadSource(ckDir); err != nil {
			// Name the checkpoint, not the temp dir, in the message.
			return nil, failed(errors.New(strings.ReplaceAll(err.Error(), ckDir, job.Source)))
		}
		src.Name = job.Source
	}
	if ctx.Err() != nil {
		return nil, transient("shutting down")
	}
	opts := DefaultOptions()
	opts.Batch, opts.Seq = job.Batch, job.Seq
	if job.Precision != "" {
		opts.Precision = artifact.Precision(job.Precision)
	}
	if job.GELU != "" {
		opts.GELU = job.GELU
	}
	opts.Backend, opts.Verify = s.o.backend, s.o.verify
	if err := opts.Validate(src.Weights.Config); err != nil {
		return nil, badJob("%s", err.Error())
	}
	out := filepath.Join(dir, "artifact.bertq")
	type done struct {
		r   *Result
		err error
	}
	ch := make(chan done, 1)
	go func() { // Compile cannot be interrupted; shutdown does not wait for it.
		if s.o.before != nil {
			s.o.before()
		}
		r, err := Compile(src, out, opts)
		ch <- done{r, err}
	}()
	var d done
	select {
	case d = <-ch:
	case <-ctx.Done():
		go func() { <-ch }()
		return nil, transient("shutting down")
	}
	if d.err != nil {
		if errors.Is(d.err, ErrOptions) || errors.Is(d.err, ErrSource) {
			return nil, badJob("%s", d.err.Error())
		}
		return nil, failed(d.err)
	}
	r := d.r
	obs, err := s.js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		return nil, transient("object store %s: %v", schemas.ModelBucket, err)
	}
	meta := map[string]string{
		MetaDigest:    r.Digest,
		MetaPrecision: string(r.Header.Precision),
		MetaBatch:     strconv.Itoa(r.Header.Batch),
		MetaSeq:       strconv.Itoa(r.Header.Seq),
		MetaSource:    job.Source,
		MetaSynthetic: strconv.FormatBool(r.Header.Synthetic),
		MetaJobID:     schemas.Clip(job.ID, 128),
	}
	if err := putFile(ctx, obs, job.Name, out, meta); err != nil {
		return nil, transient("storing the artifact as %s/%s: %v", schemas.ModelBucket, job.Name, err)
	}
	return r, nil
}

// download fetches checkpoint ck's files from the checkpoint bucket into dir.
func (s *service) download(ctx context.Context, ck, dir string, seq int) *jobError {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return transient("work dir: %v", err)
	}
	obs, err := s.js.ObjectStore(ctx, schemas.CheckpointBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return badJob("checkpoint %q is not uploaded (no bucket %s; upload it with bertq upload)", ck, schemas.CheckpointBucket)
	} else if err != nil {
		return transient("object store %s: %v", schemas.CheckpointBucket, err)
	}
	// get fetches one file; a missing object reports false.
	get := func(file string) (bool, *jobError) {
		err := obs.GetFile(ctx, CheckpointObject(ck, file), filepath.Join(dir, file))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, jetstream.ErrObjectNotFound):
			return false, nil
		case errors.Is(err, jetstream.ErrDigestMismatch):
			return false, failed(fmt.Errorf("checkpoint:%s/%s: corrupted in the object store: %v", ck, file, err))
		}
		return false, transient("downloading %s/%s: %v", schemas.CheckpointBucket, CheckpointObject(ck, file), err)
	}
	ok, e := get(checkpoint.ConfigFile)
	if e != nil {
		return e
	}
	if !ok {
		return badJob("checkpoint %q is not uploaded: no %s in %s (upload it with bertq upload)", ck, CheckpointObject(ck, checkpoint.ConfigFile), schemas.CheckpointBucket)
	}
	// Refuse a too-long seq before downloading the weights.
	var cfg struct {
		MaxPositions int `json:"max_position_embeddings"`
	}
	if b, err := os.ReadFile(filepath.Join(dir, checkpoint.ConfigFile)); err == nil && json.Unmarshal(b, &cfg) == nil &&
		cfg.MaxPositions > 0 && seq > cfg.MaxPositions {
		return badJob("seq %d out of range 3..%d (the model's max_position_embeddings)", seq, cfg.MaxPositions)
	}
	ok, e = get(checkpoint.SafetensorsFile)
	if e != nil {
		return e
	}
	if !ok {
		ok, e = get(checkpoint.SafetensorsIndex)
		if e != nil {
			return e
		}
		if !ok {
			return failed(fmt.Errorf("checkpoint:%s: neither %s nor %s was uploaded", ck, checkpoint.SafetensorsFile, checkpoint.SafetensorsIndex))
		}
		b, err := os.ReadFile(filepath.Join(dir, checkpoint.SafetensorsIndex))
		if err != nil {
			return transient("%v", err)
		}
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(b, &idx); err != nil {
			return failed(fmt.Errorf("checkpoint:%s/%s: invalid JSON: %v", ck, checkpoint.SafetensorsIndex, err))
		}
		seen := map[string]bool{}
		for _, shard := range idx.WeightMap {
			if seen[shard] {
				continue
			}
			seen[shard] = true
			if !filepath.IsLocal(shard) || strings.ContainsAny(shard, `/\`) || !strings.HasSuffix(shard, ".safetensors") {
				return failed(fmt.Errorf("checkpoint:%s/%s: shard name %q is not a .safetensors file name", ck, checkpoint.SafetensorsIndex, schemas.Clip(shard, 80)))
			}
			ok, e := get(shard)
			if e != nil {
				return e
			}
			if !ok {
				return failed(fmt.Errorf("checkpoint:%s: shard %s named by %s was not uploaded", ck, shard, checkpoint.SafetensorsIndex))
			}
		}
	}
	for _, f := range []string{checkpoint.VocabFile, checkpoint.TokenizerConfigFile} {
		if _, e := get(f); e != nil {
			return e
		}
	}
	return nil
}
