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
		args:    "DIR",
		setup: func(fs *flag.FlagSet) func(context.Context, *env) error {
			nf := addNATSFlags(fs, "")
			name := fs.String("checkpoint", "", "checkpoint name: compile jobs then use --input checkpoint:<name>")
			timeout := fs.Duration("timeout", 10*time.Minute, "give up after this long")
			return func(ctx context.Context, e *env) error {
				if *name == "" || len(e.args) != 1 {
					return usagef("want --checkpoint NAME and one checkpoint directory")
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
				fmt.Fprintf(e.stdout, "compile it with: bertq compile --submit --model MODEL --input checkpoint:%s\n", *name)
				return nil
			}
		},
	})
}
