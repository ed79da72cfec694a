package main

import (
	"context"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/compiler"
)

func init() {
	register(&command{
		name:    "upload",
		summary: "upload a Hugging Face checkpoint directory for compile jobs (checkpoint:<name>)",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			nf := addNATSFlags(fs, "")
			name := fs.String("name", "", "checkpoint name: compile jobs then use source checkpoint:<name>")
			timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
			fs.Usage = func() {
				fmt.Fprintln(fs.Output(), "usage: bertq upload --nats URL --name NAME DIR")
				fs.PrintDefaults()
			}
			return func(ctx context.Context, e *env) error {
				if *name == "" || len(e.args) != 1 {
					return fmt.Errorf("%w: want --name NAME and one checkpoint directory", errUsage)
				}
				nc, err := dialNATS(nf, "bertq upload", zerolog.Nop(), false)
				if err != nil {
					return err
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(ctx, *timeout)
				defer cancel()
				objs, err := compiler.Upload(ctx, js, *name, e.args[0])
				if err != nil {
					return err
				}
				for _, o := range objs {
					fmt.Fprintf(e.stdout, "uploaded %s\n", o)
				}
				fmt.Fprintf(e.stdout, "compile it with: bertq compile --submit --name MODEL --input checkpoint:%s\n", *name)
				return nil
			}
		},
	})
}
