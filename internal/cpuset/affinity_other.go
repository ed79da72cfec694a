//go:build !linux

package cpuset

// affinity: only Linux reports (and lets runners set) CPU affinity.
func affinity() ([]int, error) { return nil, ErrUnsupported }
