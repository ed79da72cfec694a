//go:build linux

// Package cpusettest reads what the kernel says about a process's threads'
// CPU affinity, for tests that check pinning from outside.
package cpusettest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/bertq/bertq/internal/cpuset"
)

var allowedList = regexp.MustCompile(`(?m)^Cpus_allowed_list:\s*(\S+)$`)

// Threads returns the CPUs each thread (by id) of process pid may run on,
// from /proc/<pid>/task/*/status. Threads that exit meanwhile are left out.
func Threads(pid int) (map[int][]int, error) {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[int][]int{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "status"))
		if err != nil {
			continue
		}
		m := allowedList.FindSubmatch(b)
		if m == nil {
			return nil, fmt.Errorf("%s/%s/status has no Cpus_allowed_list", dir, e.Name())
		}
		cpus, err := cpuset.Parse(string(m[1]))
		if err != nil {
			return nil, fmt.Errorf("%s/%s/status: %v", dir, e.Name(), err)
		}
		tid, _ := strconv.Atoi(e.Name())
		out[tid] = cpus
	}
	return out, nil
}
