package cuda

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSearchDirsOrder(t *testing.T) {
	dirs := searchDirs("/opt/a:/opt/b/", "/ld/one::/opt/a")
	if len(dirs) < 4 || !slices.Equal(dirs[:3], []string{"/opt/a", "/opt/b", "/ld/one"}) {
		t.Fatalf("override, then LD_LIBRARY_PATH, deduplicated and cleaned: got %v", dirs)
	}
	if !slices.Contains(dirs, "/usr/local/nvidia/lib64") || !slices.Contains(dirs, "/usr/local/cuda/lib64") {
		t.Errorf("the usual folders are missing from %v", dirs)
	}
	seen := map[string]bool{}
	for _, d := range dirs {
		if seen[d] {
			t.Errorf("%s listed twice", d)
		}
		seen[d] = true
	}
}

func TestSonameMajor(t *testing.T) {
	for in, want := range map[string]int{"libnvrtc.so.13": 13, "libnvrtc.so.11.2": 11, "libcuda.so.1": 1, "libcublasLt.so": 0} {
		if got := sonameMajor(in); got != want {
			t.Errorf("sonameMajor(%q) = %d, want %d", in, got, want)
		}
	}
}

// fakeDlopen records what was opened and fails for names in bad.
func fakeDlopen(t *testing.T, bad map[string]bool) *[]string {
	t.Helper()
	var opened []string
	old := dlopen
	dlopen = func(path string) (uintptr, error) {
		opened = append(opened, path)
		if bad[filepath.Base(path)] || !strings.Contains(path, "/") {
			return 0, errors.New("cannot open " + filepath.Base(path))
		}
		return 1, nil
	}
	t.Cleanup(func() { dlopen = old })
	return &opened
}

func touch(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFindReportsWhatIsMissing(t *testing.T) {
	fakeDlopen(t, nil)
	empty := t.TempDir()
	lib := find(specDriver, []string{empty}, 0, nil)
	if lib.Err == nil {
		t.Fatal("found a driver in an empty folder")
	}
	err := errNotLoaded(lib)
	want := "no CUDA driver: libcuda.so.1 not found in [" + empty + "]"
	if err.Error() != want || !errors.Is(err, ErrNoDriver) {
		t.Errorf("got %q, want %q wrapping ErrNoDriver", err, want)
	}
	lt := find(specLt, []string{empty}, 0, nil)
	if err := errNotLoaded(lt); !errors.Is(err, ErrNoLibrary) || !strings.Contains(err.Error(), "libcublasLt.so.13, libcublasLt.so.12") {
		t.Errorf("cuBLASLt report: %v", err)
	}
}

func TestFindPrefersNewestLoadableAndRespectsDriver(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	touch(t, a, "libnvrtc.so.12")
	touch(t, b, "libnvrtc.so.13", "libcublasLt.so.13", "libcublasLt.so.12")
	fakeDlopen(t, map[string]bool{"libcublasLt.so.13": true})

	if lib := find(specNVRTC, []string{a, b}, 0, nil); lib.Path != filepath.Join(b, "libnvrtc.so.13") {
		t.Errorf("newest soname first, whatever the folder: got %q (%v)", lib.Path, lib.Err)
	}
	if lib := find(specNVRTC, []string{a, b}, 12, nil); lib.Path != filepath.Join(a, "libnvrtc.so.12") {
		t.Errorf("a CUDA 12 driver must not get NVRTC 13: got %q", lib.Path)
	}
	lib := find(specLt, []string{b}, 0, nil)
	if lib.Path != filepath.Join(b, "libcublasLt.so.12") || len(lib.Tried) != 1 || !strings.Contains(lib.Tried[0], "cannot open libcublasLt.so.13") {
		t.Errorf("an unloadable file is reported and the next one taken: %+v", lib)
	}
	if !strings.Contains(lib.String(), "libcublasLt.so.12") {
		t.Errorf("report %q", lib.String())
	}
}

func TestFindReportsUnloadable(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir, "libcuda.so.1")
	fakeDlopen(t, map[string]bool{"libcuda.so.1": true})
	lib := find(specDriver, []string{dir}, 0, nil)
	if lib.Err == nil || !strings.Contains(lib.Err.Error(), "found but not loadable") || !strings.Contains(lib.Err.Error(), filepath.Join(dir, "libcuda.so.1")) {
		t.Errorf("got %v", lib.Err)
	}
}

func TestPreloadNVRTCBuiltins(t *testing.T) {
	dir := t.TempDir()
	touch(t, dir, "libnvrtc-builtins.so.13.0.88", "libnvrtc-builtins.so.13.0", "libnvrtc-builtins.so.12.8")
	opened := fakeDlopen(t, nil)
	preloadNVRTCBuiltins(dir, "libnvrtc.so.13")
	if len(*opened) != 1 || filepath.Base((*opened)[0]) != "libnvrtc-builtins.so.13.0" {
		t.Errorf("want only the soname of the matching major loaded, got %v", *opened)
	}
}

func TestProbeWithoutLibraries(t *testing.T) {
	fakeDlopen(t, nil)
	r := probe([]string{t.TempDir()})
	st := r.status
	if !errors.Is(st.Err, ErrNoDriver) {
		t.Fatalf("Err = %v, want ErrNoDriver first", st.Err)
	}
	report := st.String()
	for _, want := range []string{"unavailable", "libcuda: missing", "libnvrtc: missing", "libcublasLt: missing"} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}
