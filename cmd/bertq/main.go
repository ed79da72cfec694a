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
	"strings"
	"syscall"
)

// command is one subcommand. run gets the parsed flag set's remaining args.
type command struct {
	name    string
	summary string
	// args is the synopsis after the flags, e.g. "DIR" or "< pairs.jsonl".
	args string
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

// errUsage marks a usage error: run prints the message, a short usage, and
// exits 2. Commands return usagef(...), or wrap errUsage with a message.
var errUsage = errors.New("usage error")

// usageError is a usage error with the message the user needs.
type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == errUsage }

// usagef is a usage error: what was wrong, and how to put it right.
func usagef(format string, a ...any) error { return &usageError{fmt.Sprintf(format, a...)} }

// usageMessage is what a usage error says, without the "usage error" prefix
// of one that wraps errUsage ("" for errUsage itself).
func usageMessage(err error) string {
	var u *usageError
	if errors.As(err, &u) {
		return u.msg
	}
	if err == errUsage {
		return ""
	}
	return strings.TrimPrefix(err.Error(), errUsage.Error()+": ")
}

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
	fs.Usage = nil
	fn := c.setup(fs)
	help := fs.Usage // a command's own help text, if it has one
	if help == nil {
		help = func() { c.help(fs) }
	}
	err := parseQuietly(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		help()
		return 0
	}
	if err == nil {
		e.args = fs.Args()
		err = fn(ctx, e)
	}
	return c.exitCode(err, e.stderr, help)
}

// parseQuietly parses flags without the flag package's own printing: a bad
// flag becomes a usage error, reported like any other.
func parseQuietly(fs *flag.FlagSet, args []string) error {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	defer fs.SetOutput(out)
	err := fs.Parse(args)
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		return usagef("%v", err)
	}
	return err
}

// exitCode reports err: 0 for none; 2 for a usage error, printed with a short
// usage (or the full help when it has no message of its own); 1 otherwise.
func (c *command) exitCode(err error, w io.Writer, help func()) int {
	switch {
	case err == nil:
		return 0
	case !errors.Is(err, errUsage):
		fmt.Fprintf(w, "bertq %s: %v\n", c.name, err)
		return 1
	case usageMessage(err) == "":
		help()
		return 2
	}
	fmt.Fprintf(w, "bertq %s: %s\n", c.name, usageMessage(err))
	c.shortUsage(w)
	return 2
}

// shortUsage follows a usage error's message.
func (c *command) shortUsage(w io.Writer) {
	fmt.Fprintf(w, "usage: bertq %s %s\nRun 'bertq %s -h' for its flags.\n", c.name, c.synopsis(), c.name)
}

// help is a command's full usage: synopsis, summary and flags.
func (c *command) help(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintf(w, "usage: bertq %s %s\n\n%s.\n\nflags:\n", c.name, c.synopsis(), c.summary)
	fs.PrintDefaults()
}

func (c *command) synopsis() string {
	if c.args == "" {
		return "[flags]"
	}
	return "[flags] " + c.args
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
