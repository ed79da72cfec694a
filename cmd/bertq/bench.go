package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/bertq/bertq/engine"
)

// bench measures an artifact on the engine alone: the forward over batches
// formed as the worker forms them, and, interleaved with it, its parts (the
// encoder GEMMs with and without their post-ops, everything else) and the
// peak of the instruction the GEMMs run on. Files: bench.go (the command),
// bench_traffic.go (the batches), bench_measure.go (the phases),
// bench_report.go (rates, ratios, output).
func init() {
	register(&command{
		name:    "bench",
		summary: "measure a compiled model's throughput, its GEMMs' share and their distance from the CPU's peak",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			o := benchOptions{run: addRunFlags(fs, "compiled artifact `file` to measure (required)", 0)}
			fs.Float64Var(&o.seconds, "seconds", 10, "measuring time: rounds of interleaved phases (forward, GEMMs, bare GEMMs, non-GEMM, ISA peak) until it is up")
			fs.StringVar(&o.lengths, "lengths", "", "traffic `file`: a lengths JSON (a_tokens, b_tokens) or an MRPC-layout TSV, batched in file order, cycling (default: every sequence full length)")
			fs.StringVar(&o.pad, "pad", "none", "batch layout: none (packed real tokens) or static (each sequence padded to the compiled length, short batches filled with dummy rows)")
			fs.IntVar(&o.limits.Seqs, "batch", 0, "most sequences per batch (default: the artifact's batch)")
			fs.IntVar(&o.limits.Tokens, "max-tokens", 0, "most tokens per packed batch (default: batch × seq)")
			fs.StringVar(&o.rows, "matmul-rows", "", "how CPU matmuls meet varying rows: runtime or bucketed (default: the backend's choice)")
			fs.StringVar(&o.gemm, "gemm", "auto", "who computes the CPU matmuls: auto (bertq's own kernels where they are faster: int8 on AVX2-only CPUs) or library (oneDNN's everywhere)")
			fs.BoolVar(&o.json, "json", false, "end the output with one line of JSON")
			return func(ctx context.Context, e *env) error {
				if err := o.check(e.args); err != nil {
					return err
				}
				return bench(ctx, e, o)
			}
		},
	})
}

type benchOptions struct {
	run                      *runFlags
	lengths, pad, rows, gemm string
	limits                   engine.Limits
	seconds                  float64
	json                     bool
}

func (o benchOptions) check(args []string) error {
	switch {
	case o.run.artifact == "":
		return usagef("no artifact to measure (set --artifact)")
	case len(args) != 0:
		return usagef("unexpected arguments %q", args)
	case !(o.seconds > 0):
		return usagef("--seconds %g: want a positive time", o.seconds)
	case o.pad != "none" && o.pad != "static":
		return usagef("--pad %q: want none or static", o.pad)
	case o.limits.Seqs < 0 || o.limits.Tokens < 0:
		return usagef("--batch and --max-tokens must be positive")
	}
	return nil
}

func bench(ctx context.Context, e *env, o benchOptions) error {
	warnUnavailable(e.stderr)
	cores, err := o.run.pins()
	if err != nil {
		return err
	}
	m, f, err := loadModelWith(o.run.artifact, o.run.device, engine.Options{MatmulRows: o.rows, GEMM: o.gemm})
	if err != nil {
		return err
	}
	defer f.Close()
	defer m.Close()
	if f.Header.Synthetic {
		fmt.Fprintln(e.stderr, syntheticWarning)
	}
	if o.limits, err = o.limits.Check(m.Spec()); err != nil {
		return err
	}
	batches, traffic, err := benchBatches(f, m.Spec(), o)
	if err != nil {
		return err
	}
	runners, err := startRunners(m, cores)
	defer func() {
		for _, r := range runners {
			r.Close()
		}
	}()
	if err != nil {
		return err
	}
	rounds, err := measure(ctx, e, runners, batches, o.seconds)
	if err != nil {
		return err
	}
	res := aggregate(rounds, benchSetup{m: m, f: f, o: o, cores: cores, traffic: traffic, batches: batches})
	return report(e, o, res)
}
