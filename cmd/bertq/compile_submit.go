package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/checkpoint"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/schemas"
)

// submitOpts are compile's flags for sending the job to a compile worker over
// NATS instead of compiling here.
type submitOpts struct {
	submit bool
	model  string
	nats   *natsFlags
}

func submitFlags(fs *flag.FlagSet) *submitOpts {
	s := &submitOpts{}
	fs.BoolVar(&s.submit, "submit", false, "submit the job to a compile worker over NATS and wait for its result")
	fs.StringVar(&s.model, "model", "", "with --submit: the model name to store the artifact under (and serve it as)")
	s.nats = addNATSFlags(fs, "with --submit: ")
	return s
}

// run submits the compile job. A local checkpoint directory is uploaded first
// under the model's name, since the compile worker may run elsewhere.
func (s *submitOpts) run(ctx context.Context, e *env, input string, o compiler.Options) error {
	if !schemas.ValidName(s.model) {
		return usagef("--submit needs --model NAME: 1 to 64 of letters, digits, '-' and '_'")
	}
	log := stderrLogger(e.stderr, false)
	nc, err := dialNATS(s.nats, "bertq-compile", log, false)
	if err != nil {
		return err
	}
	defer nc.Close()
	source := input
	if !checkpoint.IsSynthetic(input) && !strings.HasPrefix(input, "checkpoint:") {
		if st, err := os.Stat(input); err != nil || !st.IsDir() {
			return fmt.Errorf("--input %q is neither synthetic:<model>, checkpoint:<name> nor a checkpoint directory", input)
		}
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		if _, err := compiler.Upload(ctx, js, s.model, input); err != nil {
			return err
		}
		source = "checkpoint:" + s.model
		fmt.Fprintf(e.stderr, "uploaded %s as %s\n", input, source)
	}
	if checkpoint.IsSynthetic(source) {
		fmt.Fprintln(e.stderr, syntheticWarning)
	}
	res, err := compiler.Submit(ctx, nc, schemas.CompileJob{
		Name: s.model, Source: source, Batch: o.Batch, Seq: o.Seq, Precision: string(o.Precision), GELU: o.GELU,
	})
	if err != nil {
		return err
	}
	if res.Error != nil {
		return fmt.Errorf("compile job failed: %s", res.Error.Error())
	}
	fmt.Fprintf(e.stdout, "compiled %s → model %q in bucket %s\n", source, res.Name, schemas.ModelBucket)
	fmt.Fprintf(e.stdout, "  size       %d bytes, sha256 %s\n", res.Size, res.Digest)
	fmt.Fprintf(e.stdout, "  verified   max |Δlogit| = %.3g\n", res.MaxAbsLogitDiff)
	fmt.Fprintf(e.stdout, "  took       %.1fs\n", res.ElapsedMS/1000)
	return nil
}
