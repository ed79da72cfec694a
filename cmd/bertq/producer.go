package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
)

func init() {
	register(&command{
		name:    "producer",
		summary: "load generator: clients send MRPC pairs; reports throughput, latency, accuracy",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			var f producerFlags
			f.nats = addNATSFlags(fs, "")
			fs.StringVar(&f.model, "model", "", "model name (required, except with --collect)")
			fs.IntVar(&f.clients, "clients", producer.DefaultClients, "concurrent clients")
			fs.IntVar(&f.cycle, "cycle", producer.DefaultCycle, "requests each client sends, one after another")
			fs.StringVar(&f.data, "data", "", "GLUE MRPC dev.tsv-layout file (default: the shipped sample)")
			fs.StringVar(&f.lengths, "lengths", "", "traffic `file`: a lengths JSON (a_tokens, b_tokens); sends generated text of exactly those WordPiece lengths, in file order, instead of --data (no labels: accuracy means nothing)")
			fs.DurationVar(&f.timeout, "timeout", producer.DefaultTimeout, "wait for each reply (with --collect or --wait: for all of them)")
			fs.BoolVar(&f.direct, "direct", false, "publish into the JetStream work subject (PubAck receipt) instead of requesting via the intake")
			fs.BoolVar(&f.msgpack, "msgpack", false, "encode requests as msgpack")
			fs.BoolVar(&f.jsonOut, "json", false, "end the output with one JSON line of the summary")
			fs.IntVar(&f.backlog, "backlog", 0, "publish this many requests to the stream without waiting for replies, print the run id, exit")
			fs.BoolVar(&f.wait, "wait", false, "with --backlog: stay and collect the replies (subscribed before publishing)")
			fs.StringVar(&f.collect, "collect", "", "collect the replies of the backlog with this run id (start it before the workers)")
			fs.BoolVar(&f.quiet, "quiet", false, "no progress lines")
			fs.DurationVar(&f.retry, "retry", 0, "re-send a request (same id) after this long without a reply, or when the queue was unavailable, until --timeout (0: send once)")
			fs.StringVar(&f.report, "report", "", "also write the run as a self-contained HTML page (charts of throughput, latency, batch sizes, errors) to this file")
			return func(ctx context.Context, e *env) error { return runProducer(ctx, e, &f) }
		},
	})
}

type producerFlags struct {
	nats                           *natsFlags
	model, data, collect, report   string
	lengths                        string
	clients, cycle, backlog        int
	timeout, retry                 time.Duration
	direct, msgpack, jsonOut, wait bool
	quiet                          bool
}

func runProducer(ctx context.Context, e *env, f *producerFlags) error {
	switch {
	case len(e.args) > 0:
		return usagef("unexpected argument %q", e.args[0])
	case f.collect == "" && f.model == "":
		return usagef("--model is required")
	case f.collect != "" && f.backlog > 0:
		return usagef("--collect and --backlog exclude each other (use --backlog N --wait)")
	case f.wait && f.backlog == 0:
		return usagef("--wait goes with --backlog")
	case f.backlog < 0:
		return usagef("--backlog must be positive")
	case f.report != "" && f.backlog > 0 && !f.wait:
		return usagef("--report needs replies: use --backlog N --wait, or --report with --collect")
	}
	if f.collect != "" {
		if _, err := producer.ParseBacklogRunID(f.collect); err != nil {
			return err
		}
	}
	pairs, err := producerPairs(f, e.stderr)
	if err != nil {
		return err
	}
	enc := schemas.JSON
	if f.msgpack {
		enc = schemas.Msgpack
	}
	opts := []producer.Option{
		producer.WithModel(f.model), producer.WithPairs(pairs), producer.WithTimeout(f.timeout),
		producer.WithEncoding(enc), producer.WithClients(f.clients), producer.WithCycle(f.cycle), producer.WithDirect(f.direct),
		producer.WithRetry(f.retry),
	}
	if !f.quiet {
		opts = append(opts, producer.WithProgress(e.stderr))
	}
	log := stderrLogger(e.stderr, false)
	nc, err := dialNATS(f.nats, "bertq producer", log, false)
	if err != nil {
		return err
	}
	defer nc.Close()

	var s *producer.Summary
	switch {
	case f.collect != "":
		fmt.Fprintf(e.stderr, "collecting the replies of backlog %s for up to %s\n", f.collect, f.timeout)
		s, err = producer.Collect(ctx, nc, f.collect, opts...)
	case f.backlog > 0 && !f.wait:
		r, err := producer.Backlog(ctx, nc, f.backlog, opts...)
		if r != nil && r.Published > 0 {
			printReceipt(e.stdout, r, f)
		}
		if err != nil {
			return err
		}
		if f.jsonOut {
			return writeJSONLine(e.stdout, r)
		}
		return nil
	case f.backlog > 0:
		run := producer.BacklogRunID(f.backlog)
		c, cerr := producer.StartCollect(nc, run, opts...)
		if cerr != nil {
			return cerr
		}
		r, berr := producer.Backlog(ctx, nc, f.backlog, append(opts, producer.WithRunID(run))...)
		if berr != nil {
			c.Close()
			return berr
		}
		printReceipt(e.stderr, r, f)
		s, err = c.Wait(ctx)
	default:
		s, err = producer.Run(ctx, nc, opts...)
	}
	if s != nil {
		s.Format(e.stdout)
		if f.jsonOut {
			if jerr := writeJSONLine(e.stdout, s); jerr != nil && err == nil {
				err = jerr
			}
		}
		if err == nil && s.Sent > 0 && s.Answered == 0 {
			err = errors.New("no request was answered")
		}
		if f.report != "" {
			if rerr := writeReport(f.report, s); rerr != nil {
				return rerr
			}
			fmt.Fprintf(e.stderr, "report written to %s\n", f.report)
		}
	}
	return err
}

func printReceipt(w io.Writer, r *producer.BacklogReceipt, f *producerFlags) {
	fmt.Fprintf(w, "published %d requests for model %s: run id %s (ids %s … %s)\n", r.Published, r.Model, r.RunID, r.FirstID, r.LastID)
	fmt.Fprintf(w, "replies go to %s; collect them (before workers start) with:\n  bertq producer --nats %s --collect %s --timeout 10m\n", r.Inbox, redactURL(f.nats.url), r.RunID)
}

// writeJSONLine writes v as one line of JSON.
func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// writeReport writes the HTML report of s to path.
func writeReport(path string, s *producer.Summary) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("--report: %w", err)
	}
	if err := producer.WriteReport(f, s); err != nil {
		f.Close()
		return fmt.Errorf("--report %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("--report %s: %w", path, err)
	}
	return nil
}
