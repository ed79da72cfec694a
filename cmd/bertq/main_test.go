package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/bertq/bertq/internal/cpuset"
)

// asBertqEnv makes this test binary run as the bertq command itself, so that
// tests can start it as a process of its own (under taskset, say).
const asBertqEnv = "BERTQ_TEST_AS_BERTQ"

func TestMain(m *testing.M) {
	if os.Getenv(asBertqEnv) == "1" {
		main()
	}
	os.Exit(m.Run())
}

// TestUsageErrorsSayWhatWasWrong: every command prints what was wrong, then
// its short usage, and exits 2.
func TestUsageErrorsSayWhatWasWrong(t *testing.T) {
	outside := "1023"
	if allowed, err := cpuset.Allowed(); err == nil {
		outside = fmt.Sprint(allowed[len(allowed)-1] + 1)
	}
	type usageCase struct {
		args []string
		want string
	}
	cases := map[string][]usageCase{
		"bench":    {{nil, "no artifact to measure (set --artifact)"}, {[]string{"--seconds", "soon"}, `invalid value "soon" for flag -seconds`}},
		"broker":   {{[]string{"extra"}, `unexpected arguments ["extra"]`}},
		"compile":  {{nil, "--input is required"}, {[]string{"--input", "x", "--model", "m"}, "--model names the artifact in the model bucket: it goes with --submit"}, {[]string{"--input", "x", "--submit", "--model", "a.b"}, "--submit needs --model NAME"}, {[]string{"--input", "x", "--precision", "fp8"}, "--precision: "}},
		"compiler": {{[]string{"extra"}, `unexpected argument "extra"`}},
		"predict":  {{nil, "no artifact to run (set --artifact)"}},
		"producer": {{nil, "--model is required"}, {[]string{"--model", "m", "--wait"}, "--wait goes with --backlog"}},
		"provision": {{[]string{"--replicas", "0"}, "--replicas must be at least 1"},
			{[]string{"--user", "u", "--nkey", "k"}, "give one of --creds, --nkey and --user"}},
		"tokenize": {{[]string{"--seq", "1"}, "--seq 1: must be between"}, {[]string{"file.jsonl"}, "the pairs come on stdin"}},
		"upload":   {{[]string{"--checkpoint", "c"}, "want --checkpoint NAME and one checkpoint directory"}},
		"worker": {
			{[]string{"--model", "large.bqa"}, `model name "large.bqa": use 1 to 64 of letters, digits, '-' and '_' (set --model); to serve a local file, give it as --artifact large.bqa`},
			{nil, "--model NAME (or --artifact FILE) is required"},
			{[]string{"--model", "m", "--parallel", "0"}, "--parallel 0: must be at least 1"},
			{[]string{"--model", "m", "--cpus", "0-x"}, `--cpus 0-x: not a CPU list (want e.g. 0-3,6): "x" is not a CPU number`},
			{[]string{"--model", "m", "--cpus", outside}, "--cpus " + outside + ": CPU " + outside + " is outside the process's affinity mask"},
			{[]string{"--model", "m", "--update-consumer"}, "--update-consumer goes with --ack-wait or --max-deliver"},
			{[]string{"--model", "m", "--password", "pw"}, "--password goes with --user"},
			{[]string{"--model", "m", "--nope"}, "flag provided but not defined: -nope"},
		},
	}
	for name := range commands {
		if len(cases[name]) == 0 {
			t.Errorf("no usage-error case for command %q", name)
		}
	}
	for name, cs := range cases {
		for _, tc := range cs {
			t.Run(name+" "+strings.Join(tc.args, " "), func(t *testing.T) {
				code, out, errOut := runCmd(context.Background(), append([]string{name}, tc.args...)...)
				first, rest, _ := strings.Cut(errOut, "\n")
				if code != 2 || !strings.HasPrefix(first, "bertq "+name+": ") || !strings.Contains(first, tc.want) {
					t.Errorf("exit %d, first line %q; want 2 and a line containing %q\n%s%s", code, first, tc.want, out, errOut)
				}
				if want := fmt.Sprintf("usage: bertq %s [flags]", name); !strings.HasPrefix(rest, want) || !strings.Contains(rest, "bertq "+name+" -h") {
					t.Errorf("after the message %q, want the short usage %q:\n%s", first, want, rest)
				}
			})
		}
	}
}

// TestHelp: -h prints the synopsis, the summary and every flag, and exits 0.
func TestHelp(t *testing.T) {
	code, _, errOut := runCmd(context.Background(), "worker", "-h")
	for _, want := range []string{"usage: bertq worker [flags]", commands["worker"].summary, "-artifact", "-cpus", "-parallel", "-update-consumer"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("worker -h lacks %q:\n%s", want, errOut)
		}
	}
	if code != 0 {
		t.Errorf("worker -h: exit %d", code)
	}
	if code, _, errOut := runCmd(context.Background(), "upload", "-h"); code != 0 || !strings.Contains(errOut, "usage: bertq upload [flags] DIR") {
		t.Errorf("upload -h: exit %d:\n%s", code, errOut)
	}
}
