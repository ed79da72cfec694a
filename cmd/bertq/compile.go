package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/compiler"
)

func init() {
	register(&command{
		name:    "compile",
		summary: "compile a checkpoint (HF dir or synthetic:bert-large) into a static-shape artifact",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			d := compiler.DefaultOptions()
			input := fs.String("input", "", "Hugging Face checkpoint directory, or synthetic:bert-large")
			output := fs.String("output", "", "artifact file to write")
			batch := fs.Int("batch", d.Batch, "static batch size")
			seq := fs.Int("seq", d.Seq, "static sequence length")
			precision := fs.String("precision", string(d.Precision), "encoder matmul precision: bf16, fp32 or int8 (s8 weights, u8 activations per token)")
			gelu := fs.String("gelu", d.GELU, "GELU variant: auto (the checkpoint's), exact, tanh or crude")
			device := addDeviceFlag(fs, "the backend that verifies the artifact")
			noVerify := fs.Bool("no-verify", false, "skip running the artifact against the float64 reference")
			sub := submitFlags(fs)
			return func(ctx context.Context, e *env) error {
				if *input == "" {
					return usagef("--input is required")
				}
				p, err := artifact.ParsePrecision(*precision)
				if err != nil {
					return usagef("--precision: %v", err)
				}
				opts := compiler.Options{Batch: *batch, Seq: *seq, Precision: p, GELU: *gelu, Verify: !*noVerify, Backend: *device}
				if sub.submit {
					return sub.run(ctx, e, *input, opts)
				}
				if sub.model != "" {
					return usagef("--model names the artifact in the model bucket: it goes with --submit (here, give --output FILE)")
				}
				if *output == "" {
					return usagef("--output is required (or --submit)")
				}
				src, err := compiler.LoadSource(*input)
				if err != nil {
					return err
				}
				if src.Synthetic {
					fmt.Fprintln(e.stderr, syntheticWarning)
				}
				res, err := compiler.Compile(src, *output, opts)
				if err != nil {
					return err
				}
				h := res.Header
				fmt.Fprintf(e.stdout, "compiled %s → %s\n", *input, res.Path)
				fmt.Fprintf(e.stdout, "  model      %d layers, hidden %d, %d heads, %s\n", h.Model.NumLayers, h.Model.HiddenSize, h.Model.NumHeads, h.Activation)
				fmt.Fprintf(e.stdout, "  shape      batch %d × seq %d, %s\n", h.Batch, h.Seq, h.Precision)
				fmt.Fprintf(e.stdout, "  size       %d bytes, sha256 %s\n", res.Size, res.Digest)
				if v := h.Verification; v != nil {
					fmt.Fprintf(e.stdout, "  verified   max |Δlogit| = %.3g over %d pairs (%s vs %s)\n", v.MaxAbsLogitDiff, v.Pairs, v.Backend, v.Reference)
				}
				fmt.Fprintf(e.stdout, "  took       %s\n", res.Elapsed.Round(1e6))
				return nil
			}
		},
	})
}
