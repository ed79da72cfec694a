package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"

	"github.com/ebitengine/purego"
)

// EnvLibDir names extra folders (colon-separated) searched first for the CUDA
// libraries.
const EnvLibDir = "BERTQ_CUDA_LIB_DIR"

// libSpec is one library to find: its sonames, newest first.
type libSpec struct {
	name    string // what reports call it
	sonames []string
}

var (
	specDriver = libSpec{"libcuda", []string{"libcuda.so.1"}}
	specNVRTC  = libSpec{"libnvrtc", []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}}
	specLt     = libSpec{"libcublasLt", []string{"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"}}
)

// Library reports how one library was searched for.
type Library struct {
	Name     string   // libcuda, libnvrtc, libcublasLt
	Path     string   // what was loaded ("" when nothing was)
	Version  string   // as the library reports it, when loaded
	Tried    []string // files that exist but failed to load, with why
	Searched []string // folders searched
	Err      error    // why nothing was loaded

	handle uintptr
}

func (l Library) String() string {
	if l.Err != nil {
		return fmt.Sprintf("%s: missing: %v", l.Name, l.Err)
	}
	if l.Version != "" {
		return fmt.Sprintf("%s: %s (%s)", l.Name, l.Path, l.Version)
	}
	return fmt.Sprintf("%s: %s", l.Name, l.Path)
}

// searchDirs lists the folders to search, in order: the override, then
// LD_LIBRARY_PATH, then where drivers, toolkits and Python wheels usually put
// the libraries. Duplicates are dropped; missing folders are kept, so that a
// report shows what was looked at.
func searchDirs(override, ldPath string) []string {
	var dirs []string
	seen := map[string]bool{}
	add := func(d string) {
		d = strings.TrimSpace(d)
		if d == "" {
			return
		}
		d = filepath.Clean(d)
		if !seen[d] {
			seen[d] = true
			dirs = append(dirs, d)
		}
	}
	for _, d := range filepath.SplitList(override) {
		add(d)
	}
	for _, d := range filepath.SplitList(ldPath) {
		add(d)
	}
	multiarch := map[string]string{"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}[runtime.GOARCH]
	target := map[string]string{"amd64": "x86_64-linux", "arm64": "sbsa-linux"}[runtime.GOARCH]
	for _, d := range []string{
		"/usr/local/nvidia/lib64", "/usr/local/nvidia/lib",
		"/usr/local/cuda/lib64", "/usr/local/cuda/targets/" + target + "/lib",
		"/usr/lib/" + multiarch, "/usr/lib/" + multiarch + "/nvidia/current",
		"/usr/lib64", "/usr/lib", "/usr/lib/wsl/lib",
		"/opt/torch/.venv/lib/python3.12/site-packages/nvidia/cu13/lib",
	} {
		add(d)
	}
	// Versioned toolkits and Python wheels (nvidia-cuda-nvrtc, nvidia-cublas),
	// newest first.
	for _, pattern := range []string{
		"/usr/local/cuda-*/lib64",
		"/opt/*/.venv/lib/python3*/site-packages/nvidia/cu1*/lib",
		"/opt/*/.venv/lib/python3*/site-packages/nvidia/cuda_nvrtc/lib",
		"/opt/*/.venv/lib/python3*/site-packages/nvidia/cublas/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/cu1*/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/cuda_nvrtc/lib",
		"/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib",
	} {
		m, _ := filepath.Glob(pattern)
		sort.Sort(sort.Reverse(sort.StringSlice(m)))
		for _, d := range m {
			add(d)
		}
	}
	return dirs
}

// sonameMajor returns the major version in "libx.so.13" (0 for "libx.so").
func sonameMajor(soname string) int {
	i := strings.Index(soname, ".so.")
	if i < 0 {
		return 0
	}
	v := soname[i+4:]
	if j := strings.IndexByte(v, '.'); j >= 0 {
		v = v[:j]
	}
	n, _ := strconv.Atoi(v)
	return n
}

// dlopen is purego.Dlopen, replaceable in tests.
var dlopen = func(path string) (uintptr, error) {
	return purego.Dlopen(path, purego.RTLD_NOW|purego.RTLD_GLOBAL)
}

// find loads the newest soname of spec whose major version is at most
// maxMajor (0: any), looking in dirs in order, then through the system
// loader's own cache. preload, when set, runs before each dlopen with the
// folder and soname (NVRTC needs its builtins library loaded first).
func find(spec libSpec, dirs []string, maxMajor int, preload func(dir, soname string)) Library {
	lib := Library{Name: spec.name, Searched: dirs}
	var candidates []string
	for _, s := range spec.sonames {
		if maj := sonameMajor(s); maxMajor > 0 && maj > maxMajor {
			continue
		}
		candidates = append(candidates, s)
	}
	for _, s := range candidates {
		for _, d := range dirs {
			p := filepath.Join(d, s)
			if _, err := os.Stat(p); err != nil {
				continue
			}
			if preload != nil {
				preload(d, s)
			}
			h, err := dlopen(p)
			if err != nil {
				lib.Tried = append(lib.Tried, fmt.Sprintf("%s: %v", p, err))
				continue
			}
			lib.Path, lib.handle = p, h
			return lib
		}
	}
	// Last, the system loader (ld.so.cache), which knows folders we do not.
	for _, s := range candidates {
		if h, err := dlopen(s); err == nil {
			lib.Path, lib.handle = s+" (system loader)", h
			return lib
		}
	}
	names := strings.Join(candidates, ", ")
	if len(lib.Tried) > 0 {
		lib.Err = fmt.Errorf("%s found but not loadable: %s", names, strings.Join(lib.Tried, "; "))
	} else {
		lib.Err = fmt.Errorf("%s not found in %v", names, dirs)
	}
	return lib
}

// preloadNVRTCBuiltins loads libnvrtc-builtins.so.<major>.* from the folder
// libnvrtc.so.<major> is about to be loaded from: NVRTC dlopens it by soname
// at compile time and would otherwise miss folders outside the loader's path.
func preloadNVRTCBuiltins(dir, soname string) {
	pattern := "libnvrtc-builtins.so.*"
	if maj := sonameMajor(soname); maj > 0 {
		pattern = fmt.Sprintf("libnvrtc-builtins.so.%d.*", maj)
	}
	m, _ := filepath.Glob(filepath.Join(dir, pattern))
	// The shortest name is the soname (libnvrtc-builtins.so.13.0), the one
	// NVRTC asks for.
	sort.Slice(m, func(i, j int) bool { return len(m[i]) < len(m[j]) || len(m[i]) == len(m[j]) && m[i] < m[j] })
	for _, p := range m {
		if _, err := dlopen(p); err == nil {
			return
		}
	}
}

// errNotLoaded reports a missing library in the form the tests print.
func errNotLoaded(l Library) error {
	if l.Name == specDriver.name {
		return fmt.Errorf("%w: %v", ErrNoDriver, l.Err)
	}
	return fmt.Errorf("%w: %v", ErrNoLibrary, l.Err)
}
