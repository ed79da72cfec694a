package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/compiler"
)

func init() {
	register(&command{
		name:    "compiler",
		summary: "run a compile worker: compile jobs from NATS into the model bucket",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			nf := addNATSFlags(fs, "")
			workDir := fs.String("work-dir", "", "where checkpoints are downloaded and artifacts built (default: the temp dir)")
			device := addDeviceFlag(fs, "the backend that verifies each artifact")
			heartbeat := fs.Duration("heartbeat", compiler.DefaultHeartbeat, "how often a running job is reported in progress (keep under the consumer's AckWait)")
			jsonLog := fs.Bool("log-json", false, "log JSON lines instead of console text")
			return func(ctx context.Context, e *env) error {
				if len(e.args) > 0 {
					return usagef("unexpected argument %q", e.args[0])
				}
				log := stderrLogger(e.stderr, *jsonLog).With().Str("svc", "compiler").Logger()
				nc, err := dialNATS(nf, "bertq compiler", log, true)
				if err != nil {
					return err
				}
				defer nc.Close()
				return compiler.Serve(ctx, nc, compiler.WithWorkDir(*workDir), compiler.WithVerifyBackend(*device),
					compiler.WithHeartbeat(*heartbeat), compiler.WithServiceLogger(log))
			}
		},
	})
}

// stderrLogger is the CLI's structured logger: console text or JSON lines.
func stderrLogger(w io.Writer, jsonLines bool) zerolog.Logger {
	if jsonLines {
		return zerolog.New(w).With().Timestamp().Logger()
	}
	noColor := true
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			noColor = false
		}
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: w, NoColor: noColor, TimeFormat: time.TimeOnly}).With().Timestamp().Logger()
}

// dialNATS connects as nf says (URL, credentials, TLS, inbox prefix). A
// service (forever) keeps reconnecting through server restarts; a one-shot
// command uses nats.go's bounded defaults. URLs are logged and reported
// without their credentials.
func dialNATS(nf *natsFlags, name string, log zerolog.Logger, forever bool) (*nats.Conn, error) {
	auth, err := nf.options()
	if err != nil {
		return nil, err
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(c *nats.Conn) { log.Info().Str("url", c.ConnectedUrlRedacted()).Msg("NATS reconnected") }),
	}
	if forever {
		opts = append(opts, nats.MaxReconnects(-1))
	}
	nc, err := nats.Connect(nf.url, append(opts, auth...)...)
	if err != nil {
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redactURL(nf.url), err)
	}
	return nc, nil
}
