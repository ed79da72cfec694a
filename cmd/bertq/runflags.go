package main

import (
	"errors"
	"flag"

	"github.com/bertq/bertq/internal/cpuset"
)

// deviceHelp is what --device means in every command.
const deviceHelp = "engine backend: auto, onednn, cuda or go"

// addDeviceFlag declares --device; purpose says what the backend does in
// this command ("" for running the model).
func addDeviceFlag(fs *flag.FlagSet, purpose string) *string {
	help := deviceHelp
	if purpose != "" {
		help = purpose + ": " + deviceHelp
	}
	return fs.String("device", "auto", help)
}

// runFlags are the flags of the commands that run a model on this machine
// (worker, bench, predict), spelt and meant the same in each.
type runFlags struct {
	artifact string // --artifact FILE: a compiled artifact file
	device   string // --device NAME: the engine backend
	parallel int    // --parallel N: engine runners (the worker's batch loops)
	cpus     string // --cpus LIST: the CPUs runners pin to; "none": not pinned
	perCPU   bool   // --parallel 0 (the default) means one runner per CPU
}

// addRunFlags declares --artifact, --device, --parallel and --cpus on fs.
// artifactHelp says what the file is for in this command; parallel is the
// default number of runners, 0 for one per CPU of --cpus.
func addRunFlags(fs *flag.FlagSet, artifactHelp string, parallel int) *runFlags {
	f := &runFlags{perCPU: parallel == 0}
	fs.StringVar(&f.artifact, "artifact", "", artifactHelp)
	fs.StringVar(&f.device, "device", "auto", deviceHelp)
	help := "engine runners, each pinned to a CPU of --cpus in turn"
	if f.perCPU {
		help += " (default: one per CPU of --cpus)"
	}
	fs.IntVar(&f.parallel, "parallel", parallel, help)
	fs.StringVar(&f.cpus, "cpus", "", "CPUs the runners pin to, as a Linux list (0-3,6) inside the process's affinity mask; "+
		"runner i takes the i-th, wrapping round (default: every CPU of the mask; "+cpuset.None+": no pinning)")
	return f
}

// cpuList checks --parallel and --cpus and returns the CPUs the runners pin
// to; pinned is false for --cpus none, or where the affinity mask cannot be
// read and --cpus was not given.
func (f *runFlags) cpuList() (cpus []int, pinned bool, err error) {
	if f.parallel < 1 && !(f.perCPU && f.parallel == 0) {
		return nil, false, usagef("--parallel %d: must be at least 1", f.parallel)
	}
	if f.cpus == cpuset.None {
		return nil, false, nil
	}
	allowed, err := cpuset.Allowed()
	if err != nil {
		if f.cpus == "" {
			return nil, false, nil
		}
		return nil, false, usagef("--cpus %s: %v", f.cpus, err)
	}
	cpus, err = cpuset.Choose(f.cpus, allowed)
	if errors.Is(err, cpuset.ErrSyntax) || errors.Is(err, cpuset.ErrOutside) {
		return nil, false, usagef("--cpus %s: %v", f.cpus, err)
	}
	return cpus, err == nil, err
}

// pins returns each runner's CPU, for engine.Model.NewRunner: runner i
// gets the i-th CPU of cpuList, wrapping round, or -1 (not pinned) when
// pinning is off. There are --parallel runners, or with --parallel 0 (where
// it is the default) one per CPU, one when unpinned.
func (f *runFlags) pins() ([]int, error) {
	cpus, _, err := f.cpuList()
	if err != nil {
		return nil, err
	}
	n := f.parallel
	if n == 0 {
		n = max(1, len(cpus))
	}
	return cpuset.Assign(cpus, n), nil
}
