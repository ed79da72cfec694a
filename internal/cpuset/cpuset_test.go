package cpuset

import (
	"errors"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []int
	}{
		{"0", []int{0}},
		{"0-3,6", []int{0, 1, 2, 3, 6}},
		{"6,0-3", []int{0, 1, 2, 3, 6}},
		{"4-7", []int{4, 5, 6, 7}},
		{"1,1,0-1", []int{0, 1}},
		{"007", []int{7}},
		{"1023", []int{1023}},
		{"5-5", []int{5}},
	} {
		got, err := Parse(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", ",", "0,", ",0", "a", "-1", "1-", "-", "3-1", "0-3,,6", " 1", "1 ", "1024", "0-1024",
		"99999999999999999999", "+1", "0x1", "1-2-3", "1:2", "none", "0-3:2"} {
		if got, err := Parse(bad); !errors.Is(err, ErrSyntax) {
			t.Errorf("Parse(%q) = %v, %v; want ErrSyntax", bad, got, err)
		}
	}
}

func TestFormat(t *testing.T) {
	for in, want := range map[string]string{"0": "0", "0-3,6": "0-3,6", "1,3,5": "1,3,5", "0,1": "0-1", "2-4,5-6,9": "2-6,9"} {
		cpus, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := Format(cpus); got != want {
			t.Errorf("Format(Parse(%q)) = %q, want %q", in, got, want)
		}
	}
	if got := Format(nil); got != "" {
		t.Errorf("Format(nil) = %q", got)
	}
}

func TestChoose(t *testing.T) {
	allowed := []int{4, 5, 6, 7} // a container's cpuset 4-7
	if got, err := Choose("", allowed); err != nil || !slices.Equal(got, allowed) {
		t.Errorf(`Choose("") = %v, %v`, got, err)
	}
	if got, err := Choose(None, allowed); err != nil || got != nil {
		t.Errorf("Choose(none) = %v, %v", got, err)
	}
	if got, err := Choose("5,7", allowed); err != nil || !slices.Equal(got, []int{5, 7}) {
		t.Errorf(`Choose("5,7") = %v, %v`, got, err)
	}
	_, err := Choose("0-1", allowed)
	if !errors.Is(err, ErrOutside) || !strings.Contains(err.Error(), "CPU 0 is outside the process's affinity mask 4-7") {
		t.Errorf(`Choose("0-1") error %v`, err)
	}
	if _, err := Choose("x", allowed); !errors.Is(err, ErrSyntax) {
		t.Errorf(`Choose("x") error %v`, err)
	}
}

func TestAssign(t *testing.T) {
	if got := Assign([]int{4, 5, 6}, 5); !slices.Equal(got, []int{4, 5, 6, 4, 5}) {
		t.Errorf("Assign wraps: %v", got)
	}
	if got := Assign([]int{1}, 2); !slices.Equal(got, []int{1, 1}) {
		t.Errorf("Assign one CPU: %v", got)
	}
	if got := Assign(nil, 3); !slices.Equal(got, []int{-1, -1, -1}) {
		t.Errorf("Assign unpinned: %v", got)
	}
}

// FuzzParseCPUList checks Parse against a separate, regexp-based reading of
// the list syntax, and that Format gives back a list that parses to the same
// CPUs.
func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"0", "0-3,6", "4-7", "1,1,0-1", "3-1", "", ",", "1023", "1024", "0-1023", "a-b", "1--2"} {
		f.Add(s)
	}
	part := regexp.MustCompile(`^([0-9]{1,4})(?:-([0-9]{1,4}))?$`)
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s)
		// The oracle: every comma-separated part is N or N-M with N ≤ M < MaxCPU.
		want := map[int]bool{}
		ok := s != ""
		for _, p := range strings.Split(s, ",") {
			m := part.FindStringSubmatch(p)
			if !ok || m == nil {
				ok = false
				break
			}
			lo, _ := strconv.Atoi(m[1])
			hi := lo
			if m[2] != "" {
				hi, _ = strconv.Atoi(m[2])
			}
			if hi < lo || hi >= MaxCPU {
				ok = false
				break
			}
			for c := lo; c <= hi; c++ {
				want[c] = true
			}
		}
		if !ok {
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want an error", s, got)
			}
			if !errors.Is(err, ErrSyntax) {
				t.Fatalf("Parse(%q) error %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if len(got) != len(want) || !slices.IsSorted(got) {
			t.Fatalf("Parse(%q) = %v, want the %d CPUs %v, sorted", s, got, len(want), want)
		}
		for _, c := range got {
			if !want[c] {
				t.Fatalf("Parse(%q) = %v holds %d", s, got, c)
			}
		}
		back, err := Parse(Format(got))
		if err != nil || !slices.Equal(back, got) {
			t.Fatalf("Parse(Format(%v)) = %v, %v", got, back, err)
		}
	})
}
