package main

import (
	"context"
	"flag"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/broker"
)

func init() {
	register(&command{
		name:    "provision",
		summary: "create or update bertq's streams and buckets on a NATS server or cluster",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			nf := addNATSFlags(fs, "")
			replicas := fs.Int("replicas", 1, "stream and bucket replicas (up to the cluster size)")
			maxQueue := fs.Int64("max-queue", broker.DefaultMaxQueue, "most requests queued before publishers are refused with queue_full (-1: no limit)")
			intake := fs.Bool("intake", false, "then run the intake service on this server until interrupted")
			jsonLog := fs.Bool("log-json", false, "log JSON lines instead of console text")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected arguments %q", e.args)
				}
				if *replicas < 1 {
					return usagef("--replicas must be at least 1")
				}
				log := stderrLogger(e.stderr, *jsonLog).With().Str("svc", "provision").Logger()
				nc, err := dialNATS(nf, "bertq provision", log, *intake)
				if err != nil {
					return err
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err = broker.Provision(pctx, js, broker.WithReplicas(*replicas), broker.WithMaxQueue(*maxQueue), broker.WithProvisionLogger(log))
				cancel()
				if err != nil {
					return err
				}
				log.Info().Str("url", redactURL(nf.url)).Msg("provisioned")
				if !*intake {
					return nil
				}
				in, err := broker.StartIntake(nc, broker.WithIntakeLogger(log.With().Str("component", "intake").Logger()))
				if err != nil {
					return err
				}
				log.Info().Msg("intake serving")
				<-ctx.Done()
				in.Stop()
				nc.FlushTimeout(2 * time.Second)
				return nil
			}
		},
	})
}
