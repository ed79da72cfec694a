package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

func init() {
	register(&command{
		name:    "worker",
		summary: "serve a compiled model from the JetStream queue, in packed (or static) batches",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			o := &workerFlags{}
			o.nats = addNATSFlags(fs, "")
			fs.StringVar(&o.model, "model", "", "model name: the artifact's name in the "+schemas.ModelBucket+" bucket and the subject token requests arrive on")
			o.run = addRunFlags(fs, "serve this local artifact file instead of fetching the model's from the bucket (model name: --model, else the file's base name)", 4)
			fs.StringVar(&o.cache, "cache", worker.DefaultCacheDir(), "directory caching fetched artifacts by digest")
			fs.StringVar(&o.metrics, "metrics", "127.0.0.1:9464", "Prometheus /metrics listen address (empty: off)")
			fs.StringVar(&o.id, "id", "", "worker id in replies and metrics (default host-pid)")
			fs.DurationVar(&o.ackWait, "ack-wait", 0, "AckWait of the model's shared consumer (default: the existing consumer's, else 30s); differing from the existing one needs --update-consumer")
			fs.IntVar(&o.maxDeliver, "max-deliver", 0, "deliveries of a request before it is dead-lettered, on the shared consumer (default: the existing consumer's, else 5); differing needs --update-consumer")
			fs.BoolVar(&o.updateConsumer, "update-consumer", false, "change the shared consumer's settings to --ack-wait/--max-deliver for every worker of the model")
			fs.BoolVar(&o.jsonLog, "log-json", false, "log JSON lines instead of console text")
			fs.StringVar(&o.pad, "pad", "none", "batch layout: none (packed real tokens) or static (each sequence padded to the compiled length, short batches filled with dummy rows)")
			fs.IntVar(&o.limits.Seqs, "batch", 0, "most sequences per batch (default: the artifact's batch)")
			fs.IntVar(&o.limits.Tokens, "max-tokens", 0, "most tokens per packed batch (default: batch × seq)")
			fs.IntVar(&o.prefetch, "prefetch", 0, "requests on their way from the server ahead of the batch loops (default: sized to about 50 ms of the engine's measured speed)")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				return runWorker(ctx, e, o)
			}
		},
	})
}

type workerFlags struct {
	nats                      *natsFlags
	run                       *runFlags
	model, cache, metrics, id string
	maxDeliver, prefetch      int
	ackWait                   time.Duration
	updateConsumer, jsonLog   bool
	pad                       string
	limits                    engine.Limits
}

// check checks the flags and returns the model name: --model, else the
// --artifact file's base name.
func (o *workerFlags) check() (string, error) {
	name := o.model
	if name == "" && o.run.artifact != "" {
		name = strings.TrimSuffix(filepath.Base(o.run.artifact), filepath.Ext(o.run.artifact))
	}
	switch {
	case name == "":
		return "", usagef("--model NAME (or --artifact FILE) is required")
	case !schemas.ValidName(name) && o.model != "" && strings.ContainsAny(o.model, "./"):
		return "", usagef("model name %q: use 1 to 64 of letters, digits, '-' and '_' (set --model); to serve a local file, give it as --artifact %s", name, name)
	case !schemas.ValidName(name):
		return "", usagef("model name %q: use 1 to 64 of letters, digits, '-' and '_' (set --model)", name)
	case o.ackWait < 0 || o.maxDeliver < 0:
		return "", usagef("--ack-wait and --max-deliver must be positive")
	case o.updateConsumer && o.ackWait == 0 && o.maxDeliver == 0:
		return "", usagef("--update-consumer goes with --ack-wait or --max-deliver")
	case o.pad != string(worker.PadNone) && o.pad != string(worker.PadStatic):
		return "", usagef("--pad %q: want none or static", o.pad)
	case o.limits.Seqs < 0 || o.limits.Tokens < 0 || o.prefetch < 0:
		return "", usagef("--batch, --max-tokens and --prefetch must be positive")
	}
	return name, nil
}

// options turns the flags into worker options. Consumer settings are passed
// only when given, so that a worker otherwise adopts the shared consumer's.
func (o *workerFlags) options(base zerolog.Logger) ([]worker.Option, error) {
	cpus, pinned, err := o.run.cpuList()
	if err != nil {
		return nil, err
	}
	opts := []worker.Option{worker.WithParallel(o.run.parallel), worker.WithLogger(base), // the worker adds model and worker id
		worker.WithPinning(pinned), worker.WithCPUs(cpus), worker.WithUpdateConsumer(o.updateConsumer),
		worker.WithPad(worker.Pad(o.pad)), worker.WithLimits(o.limits), worker.WithPrefetch(o.prefetch)}
	if o.ackWait > 0 {
		opts = append(opts, worker.WithAckWait(o.ackWait))
	}
	if o.maxDeliver > 0 {
		opts = append(opts, worker.WithMaxDeliver(o.maxDeliver))
	}
	if o.id != "" {
		opts = append(opts, worker.WithID(o.id))
	}
	return opts, nil
}

func runWorker(ctx context.Context, e *env, o *workerFlags) error {
	base := stderrLogger(e.stderr, o.jsonLog).With().Str("svc", "worker").Logger()
	name, err := o.check()
	if err != nil {
		return err
	}
	opts, err := o.options(base)
	if err != nil {
		return err
	}
	log := base.With().Str("model", name).Logger()

	nc, err := dialNATS(o.nats, "bertq worker "+name, log, true)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}

	var f *artifact.File
	if o.run.artifact != "" {
		f, err = artifact.Open(o.run.artifact)
		if err == nil {
			warnIfNotInBucket(ctx, js, name, log)
		}
	} else {
		log.Info().Str("bucket", schemas.ModelBucket).Str("cache", o.cache).Msg("fetching the artifact")
		f, err = worker.FetchArtifact(ctx, js, name, o.cache)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	h := f.Header
	log.Info().Str("artifact", f.Path).Str("digest", f.Digest[:min(16, len(f.Digest))]).
		Int("batch", h.Batch).Int("seq", h.Seq).Str("precision", string(h.Precision)).
		Str("source", h.Source).Msg("artifact verified")
	if h.Synthetic {
		fmt.Fprintln(e.stderr, syntheticWarning)
	}

	b, err := engine.Get(o.run.device)
	if err != nil {
		return err
	}
	un := engine.Unavailable()
	names := make([]string, 0, len(un))
	for n := range un {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		log.Warn().Str("engine", n).Str("why", un[n].Error()).Msg("engine unavailable here")
	}
	log.Info().Str("engine", b.Name()).Msg("engine backend")
	model, err := b.Load(f, engine.Options{})
	if err != nil {
		return fmt.Errorf("loading %s on %s: %w", name, b.Name(), err)
	}
	defer model.Close()
	info, err := worker.InfoFromArtifact(name, f)
	if err != nil {
		return err
	}
	w, err := worker.New(nc, model, append(opts, worker.WithInfo(info))...)
	if err != nil {
		return err
	}
	if o.metrics != "" {
		stop, err := serveMetrics(o.metrics, w, log)
		if err != nil {
			return err
		}
		defer stop()
	}
	err = w.Run(ctx)
	if errors.Is(err, worker.ErrConsumerMismatch) {
		return fmt.Errorf("%w\nLeave --ack-wait and --max-deliver out to adopt the consumer's settings, or add --update-consumer to change them for every worker of %s", err, name)
	}
	return err
}

// serveMetrics serves the worker's /metrics on addr until stop.
func serveMetrics(addr string, w *worker.Worker, log zerolog.Logger) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics %s: %w (use another address, or --metrics '' to turn it off)", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", w.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn().Err(err).Msg("metrics server stopped")
		}
	}()
	log.Info().Str("url", "http://"+ln.Addr().String()+"/metrics").Msg("metrics")
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}, nil
}

// warnIfNotInBucket tells the operator of a local artifact that the intake
// will refuse its requests (unknown_model) until it is uploaded; JetStream
// clients publishing to the work subject are served regardless.
func warnIfNotInBucket(ctx context.Context, js jetstream.JetStream, name string, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	obs, err := js.ObjectStore(ctx, schemas.ModelBucket)
	if err == nil {
		_, err = obs.GetInfo(ctx, name)
	}
	if err != nil {
		log.Warn().Str("bucket", schemas.ModelBucket).Err(err).
			Msg("model not found in the bucket: the intake answers unknown_model until it is uploaded; direct JetStream clients are served")
	}
}
