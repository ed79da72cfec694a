// Package cpuset parses Linux CPU lists ("0-3,6") and chooses the CPUs that
// engine runners pin to: by default the CPUs of the process's affinity mask,
// as read once at start, so that a worker under taskset, in a container's
// cpuset, or beside another worker stays on the CPUs it was given.
package cpuset

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxCPU bounds CPU ids: the size of Linux's default cpu_set_t, which is also
// what golang.org/x/sys/unix.CPUSet holds.
const MaxCPU = 1024

// None is the --cpus value that turns pinning off.
const None = "none"

// Sentinel errors; failures wrap one of them with detail.
var (
	// ErrSyntax: a CPU list is not in Linux list syntax.
	ErrSyntax = errors.New("not a CPU list")
	// ErrOutside: a chosen CPU is not one this process may run on.
	ErrOutside = errors.New("outside the process's affinity mask")
	// ErrUnsupported: this system cannot report the affinity mask.
	ErrUnsupported = errors.New("CPU affinity is not supported here")
)

// Parse reads a Linux CPU list: comma-separated CPU ids and inclusive ranges,
// e.g. "0-3,6". It returns the CPUs sorted, each once.
func Parse(s string) ([]int, error) {
	if s == "" {
		return nil, fmt.Errorf("%w (want e.g. 0-3,6): empty", ErrSyntax)
	}
	var seen [MaxCPU]bool
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := cpuID(lo)
		if err != nil {
			return nil, fmt.Errorf("%w (want e.g. 0-3,6): %v", ErrSyntax, err)
		}
		b := a
		if isRange {
			if b, err = cpuID(hi); err != nil {
				return nil, fmt.Errorf("%w (want e.g. 0-3,6): %v", ErrSyntax, err)
			}
			if b < a {
				return nil, fmt.Errorf("%w: the range %d-%d runs backwards", ErrSyntax, a, b)
			}
		}
		for c := a; c <= b; c++ {
			seen[c] = true
		}
	}
	var cpus []int
	for c, ok := range seen {
		if ok {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}

// cpuID reads one decimal CPU id below MaxCPU (digits only: no sign, no spaces).
func cpuID(s string) (int, error) {
	if s == "" || len(s) > 4 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a CPU number", clip(s))
	}
	n, _ := strconv.Atoi(s)
	if n >= MaxCPU {
		return 0, fmt.Errorf("CPU %d is beyond the last possible CPU %d", n, MaxCPU-1)
	}
	return n, nil
}

// clip keeps error messages about user text short.
func clip(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// Format writes sorted, distinct CPUs as a compact list ("0-3,6"); the inverse
// of Parse.
func Format(cpus []int) string {
	var b strings.Builder
	for i := 0; i < len(cpus); {
		j := i
		for j+1 < len(cpus) && cpus[j+1] == cpus[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(cpus[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(cpus[j]))
		}
		i = j + 1
	}
	return b.String()
}

// Choose turns a --cpus value into the CPUs runners pin to: "" means every
// CPU of allowed (the affinity mask), None means no pinning (nil), anything
// else is a list that must lie inside allowed.
func Choose(spec string, allowed []int) ([]int, error) {
	switch spec {
	case "":
		return allowed, nil
	case None:
		return nil, nil
	}
	cpus, err := Parse(spec)
	if err != nil {
		return nil, err
	}
	if err := Within(cpus, allowed); err != nil {
		return nil, err
	}
	return cpus, nil
}

// Within checks that every CPU of cpus is in allowed.
func Within(cpus, allowed []int) error {
	in := make(map[int]bool, len(allowed))
	for _, c := range allowed {
		in[c] = true
	}
	for _, c := range cpus {
		if !in[c] {
			return fmt.Errorf("CPU %d is %w %s (see `taskset -p <pid>`, or the container's cpuset)", c, ErrOutside, Format(allowed))
		}
	}
	return nil
}

// Assign gives each of n runners its CPU: runner i gets cpus[i mod len(cpus)],
// so more runners than CPUs share them round-robin. With no CPUs every runner
// gets -1, which engine.Model.NewRunner reads as "not pinned".
func Assign(cpus []int, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = -1
		if len(cpus) > 0 {
			out[i] = cpus[i%len(cpus)]
		}
	}
	return out
}

// Allowed returns the CPUs this process may run on, as its affinity mask was
// when the process started (before any runner pinned a thread of its own).
func Allowed() ([]int, error) {
	if startErr != nil {
		return nil, startErr
	}
	return append([]int(nil), startMask...), nil
}

// startMask is read during package initialisation, on the main thread.
var startMask, startErr = affinity()
