package main

import (
	"errors"
	"flag"
	"io"
	"slices"
	"strconv"
	"testing"

	"github.com/bertq/bertq/internal/cpuset"
)

// TestRunFlags: the shared --artifact/--device/--parallel/--cpus flags, and
// the CPU each runner gets.
func TestRunFlags(t *testing.T) {
	allowed, err := cpuset.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	last := allowed[len(allowed)-1]
	parse := func(args ...string) *runFlags {
		t.Helper()
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		f := addRunFlags(fs, "the artifact", 3)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		return f
	}
	f := parse("--artifact", "m.bqa", "--device", "go")
	if f.artifact != "m.bqa" || f.device != "go" || f.parallel != 3 || f.cpus != "" {
		t.Errorf("flags %+v", f)
	}
	if pins, err := f.pins(); err != nil || !slices.Equal(pins, cpuset.Assign(allowed, 3)) {
		t.Errorf("default pins %v, %v; want the affinity mask %v in turn", pins, err, allowed)
	}
	l := strconv.Itoa(last)
	if pins, err := parse("--parallel", "2", "--cpus", l).pins(); err != nil || !slices.Equal(pins, []int{last, last}) {
		t.Errorf("--cpus %d: pins %v, %v", last, pins, err)
	}
	if pins, err := parse("--cpus", "none").pins(); err != nil || !slices.Equal(pins, []int{-1, -1, -1}) {
		t.Errorf("--cpus none: pins %v, %v", pins, err)
	}
	for _, args := range [][]string{{"--parallel", "0"}, {"--cpus", "x"}, {"--cpus", strconv.Itoa(last + 1)}} {
		if _, err := parse(args...).pins(); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", args, err)
		}
	}

	// With 0 as the default (bench), --parallel 0 is one runner per CPU.
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	f = addRunFlags(fs, "the artifact", 0)
	if err := fs.Parse([]string{"--cpus", pairList(allowed)}); err != nil {
		t.Fatal(err)
	}
	if pins, err := f.pins(); err != nil || len(pins) != min(2, len(allowed)) {
		t.Errorf("per CPU: pins %v, %v", pins, err)
	}
	f.cpus = cpuset.None
	if pins, err := f.pins(); err != nil || !slices.Equal(pins, []int{-1}) {
		t.Errorf("per CPU, unpinned: pins %v, %v", pins, err)
	}
}

// pairList is the mask's last two CPUs (or its one) as a list.
func pairList(allowed []int) string {
	return cpuset.Format(allowed[max(0, len(allowed)-2):])
}
