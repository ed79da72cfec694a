//go:build linux

package cpuset

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// affinity reads the calling thread's affinity mask (sched_getaffinity).
func affinity() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("%w: sched_getaffinity: %v", ErrUnsupported, err)
	}
	var cpus []int
	for c := 0; c < MaxCPU; c++ {
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
