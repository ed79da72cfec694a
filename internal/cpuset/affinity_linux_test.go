//go:build linux

package cpuset

import (
	"os"
	"regexp"
	"slices"
	"testing"
)

// TestAllowedIsTheMask compares Allowed with what the kernel reports for the
// process in /proc/self/status.
func TestAllowedIsTheMask(t *testing.T) {
	got, err := Allowed()
	if err != nil {
		t.Fatal(err)
	}
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^Cpus_allowed_list:\s*(\S+)$`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no Cpus_allowed_list in /proc/self/status")
	}
	want, err := Parse(string(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("Allowed() = %v, /proc says %v", got, want)
	}
}
