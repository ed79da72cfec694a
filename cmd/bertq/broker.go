package main

import (
	"context"
	"flag"
	"fmt"
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
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return fmt.Errorf("%w: unexpected arguments %q", errUsage, e.args)
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
				return runBroker(ctx, log, opts, []broker.ProvisionOption{broker.WithMaxQueue(*maxQueue), broker.WithReplicas(*replicas)})
			}
		},
	})
}

func runBroker(ctx context.Context, log zerolog.Logger, opts []broker.Option, popts []broker.ProvisionOption) error {
	b, err := broker.Start(opts...)
	if err != nil {
		return err
	}
	defer func() {
		b.Shutdown()
		b.WaitForShutdown()
		log.Info().Msg("broker stopped")
	}()
	nc, err := nats.Connect(b.ClientURL(), nats.Name("bertq-broker"), nats.InProcessServer(b.Server()))
	if err != nil {
		return fmt.Errorf("connecting to the embedded server: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = broker.Provision(pctx, js, append(popts, broker.WithProvisionLogger(log))...)
	cancel()
	if err != nil {
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
