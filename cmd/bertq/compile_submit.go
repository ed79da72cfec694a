package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/bertq/bertq/compiler"
)

// submitOpts are compile's flags for sending the job to a compile worker over
// NATS instead of compiling here.
type submitOpts struct {
	submit bool
	name   string
	nats   string
}

func submitFlags(fs *flag.FlagSet) *submitOpts {
	s := &submitOpts{}
	fs.BoolVar(&s.submit, "submit", false, "submit the job to a compile worker over NATS and wait for its result")
	fs.StringVar(&s.name, "name", "", "with --submit: the model name to store the artifact under")
	fs.StringVar(&s.nats, "nats", defaultNATS, "with --submit: NATS server URL")
	return s
}

func (s *submitOpts) run(ctx context.Context, e *env, input string, o compiler.Options) error {
	if s.name == "" {
		return fmt.Errorf("%w: --submit needs --name", errUsage)
	}
	return fmt.Errorf("--submit: not available in this build yet")
}
