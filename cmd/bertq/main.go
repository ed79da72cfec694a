// Command bertq is the one CLI of bertq: it compiles models, runs the broker,
// workers, compile workers and producers, and offers local tools (tokenize,
// predict, bench). Each subcommand lives in its own file and registers itself.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand. run gets the parsed flag set's remaining args.
type command struct {
	name    string
	summary string
	// setup declares flags on fs and returns the function that runs the command.
	setup func(fs *flag.FlagSet) func(ctx context.Context, env *env) error
}

// env is what a command may touch of the process, so tests can drive commands.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	args           []string // positional arguments after flags
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

// errUsage marks a usage error: the command printed its usage, exit code 2.
var errUsage = errors.New("usage error")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "bertq: unknown command %q\n\n", args[0])
		usage(e.stderr)
		return 2
	}
	fs := flag.NewFlagSet("bertq "+c.name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fn := c.setup(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	e.args = fs.Args()
	if err := fn(ctx, e); err != nil {
		if errors.Is(err, errUsage) {
			fs.Usage()
			return 2
		}
		fmt.Fprintf(e.stderr, "bertq %s: %v\n", c.name, err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: bertq <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'bertq <command> -h' for a command's flags.")
}

// defaultNATS is where commands look for NATS unless told otherwise.
const defaultNATS = "nats://127.0.0.1:4222"
