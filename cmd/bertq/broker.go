package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/broker"
)

func init() {
	register(&command{
		name:    "broker",
		summary: "run the embedded NATS JetStream broker, provisioned, with the intake",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			listen := fs.String("listen", broker.DefaultListen, "client listen address host:port")
			store := fs.String("store", "", "JetStream store directory (default: the config's, else "+broker.DefaultStoreDir()+")")
			config := fs.String("config", "", "nats-server configuration file (clustering, TLS, accounts); --listen and --store override it when given")
			maxQueue := fs.Int64("max-queue", broker.DefaultMaxQueue, "most requests queued before publishers are refused with queue_full (-1: no limit)")
			replicas := fs.Int("replicas", 1, "stream and bucket replicas (clustered config only)")
			jsonLog := fs.Bool("log-json", false, "log JSON lines instead of console text")
			// With a config that requires authentication, the broker's own
			// (in-process) connection for provisioning and the intake logs
			// in like any client: see deploy/SECURITY.md.
			auth := &natsFlags{}
			auth.addAuth(fs, "the broker's own connection (provisioning, intake): ")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				log := stderrLogger(e.stderr, *jsonLog).With().Str("svc", "broker").Logger()
				opts := []broker.Option{broker.WithLogger(log.With().Str("component", "nats").Logger().Level(zerolog.WarnLevel))}
				listenSet := false
				fs.Visit(func(f *flag.Flag) { listenSet = listenSet || f.Name == "listen" })
				if *config == "" || listenSet {
					opts = append(opts, broker.WithListen(*listen))
				}
				if *store != "" {
					opts = append(opts, broker.WithStoreDir(*store))
				}
				if *config != "" {
					opts = append(opts, broker.WithConfigFile(*config))
				}
				copts, err := auth.options()
				if err != nil {
					return err
				}
				return runBroker(ctx, log, opts, copts, []broker.ProvisionOption{broker.WithMaxQueue(*maxQueue), broker.WithReplicas(*replicas)})
			}
		},
	})
}

func runBroker(ctx context.Context, log zerolog.Logger, opts []broker.Option, copts []nats.Option, popts []broker.ProvisionOption) error {
	b, err := broker.Start(opts...)
	if err != nil {
		return err
	}
	defer func() {
		b.Shutdown()
		b.WaitForShutdown()
		log.Info().Msg("broker stopped")
	}()
	// In process, TLS is neither needed nor required: dial plain nats://.
	inproc := strings.Replace(b.ClientURL(), "tls://", "nats://", 1)
	nc, err := nats.Connect(inproc, append([]nats.Option{nats.Name("bertq-broker"), nats.InProcessServer(b.Server())}, copts...)...)
	if err != nil {
		return fmt.Errorf("connecting to the embedded server: %w (with a config that requires authentication, give the broker's own user: --nkey, --creds or --user, and --inbox-prefix; see deploy/SECURITY.md)", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := provisionWhenReady(ctx, js, log, append(popts, broker.WithProvisionLogger(log))); err != nil {
		return err
	}
	in, err := broker.StartIntake(nc, broker.WithIntakeLogger(log.With().Str("component", "intake").Logger()))
	if err != nil {
		return err
	}
	log.Info().Str("url", b.ClientURL()).Str("server", b.Server().Name()).Msg("broker ready")
	<-ctx.Done()
	log.Info().Msg("stopping")
	in.Stop()
	nc.FlushTimeout(2 * time.Second)
	return nil
}

// provisionWhenReady provisions, retrying while JetStream does not answer:
// the nodes of a fresh cluster elect a meta leader first (seconds, or until
// enough nodes are up), and requests sent before that go unanswered. Other
// errors end the broker, as before.
func provisionWhenReady(ctx context.Context, js jetstream.JetStream, log zerolog.Logger, popts []broker.ProvisionOption) error {
	for {
		// Each attempt is bounded: a request sent before the election is never
		// answered. Creating a replicated stream takes seconds of its own.
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := broker.Provision(pctx, js, popts...)
		timedOut := pctx.Err() != nil
		cancel()
		if err == nil || ctx.Err() != nil || !(timedOut || strings.Contains(err.Error(), "temporarily unavailable")) {
			return err
		}
		log.Warn().Err(err).Msg("JetStream is not ready (a cluster is still electing its leader, or too few of its nodes are up); retrying")
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
