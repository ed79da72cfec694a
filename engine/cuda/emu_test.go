package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestKernelsOnCPUEmulator runs the CUDA kernels' own source on the CPU:
// testdata/emu/cuda_emu.h emulates threads, barriers, warp shuffles and
// shared memory well enough for these kernels, and harness.cc checks each
// against a double-precision reference (LayerNorms, GELUs, attention with
// several key tiles, holes and fully masked sequences, pooler, classifier).
// It needs a C++20 compiler, not a GPU; what it cannot catch (cuBLASLt, the
// launches from Go, real warp scheduling) is left to TestCUDA/GPU.
func TestKernelsOnCPUEmulator(t *testing.T) {
	dir := emuBuildDir(t)
	bin := filepath.Join(dir, "harness")
	build := exec.Command(compilerCXX(t), "-std=c++20", "-O1", "-pthread", "-Wall", "-Wno-unknown-pragmas", "-o", bin, "harness.cc")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the emulator harness: %v\n%s", err, out)
	}
	out, err := exec.Command(bin).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ALL OK") {
		t.Fatalf("kernels on the CPU emulator: %v\n%s", err, out)
	}
	t.Logf("\n%s", out)
}

// compilerCXX returns the C++ compiler the emulator tests build with. `go
// tool task setup` installs it (Debian's g++); without it the tests fail
// rather than skip, since a skipped emulator run lets kernel bugs through.
func compilerCXX(t *testing.T) string {
	t.Helper()
	cxx, err := exec.LookPath("g++")
	if err != nil {
		t.Fatalf("no g++ here (%v): the CUDA kernels cannot run on the CPU emulator; install it with `go tool task setup` (Debian package g++)", err)
	}
	return cxx
}

// emuBuildDir prepares a folder with the emulator sources and the kernels
// rewritten for it (kernels_emu.cu).
func emuBuildDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src, err := kernelSource()
	if err != nil {
		t.Fatal(err)
	}
	// Dynamic shared memory becomes the emulator's buffer; static __shared__
	// variables become statics (blocks run one at a time).
	src = regexp.MustCompile(`extern __shared__ (\w+) (\w+)\[\];`).ReplaceAllString(src, `$1* $2 = ($1*)emu_dyn_smem;`)
	src = strings.ReplaceAll(src, "__shared__", "static")
	if err := os.WriteFile(filepath.Join(dir, "kernels_emu.cu"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"cuda_emu.h", "harness.cc", "fakecuda.cc"} {
		b, err := os.ReadFile(filepath.Join("testdata", "emu", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestCUDAOnFakeDevice runs TestCUDA, GPU tests included, in a child process
// whose libcuda, libnvrtc and libcublasLt are testdata/emu/fakecuda.cc: the
// kernels run on the CPU emulator, cuBLASLt's matmuls on the CPU, graphs are
// recorded and replayed, and every call is validated as the real libraries
// would. It checks the whole Go side (library loading, purego calls with
// their real C ABI, kernel parameters, matmul layouts, graph capture)
// against the Go engine without a GPU; real hardware only adds timing,
// warp scheduling and the real cuBLASLt.
func TestCUDAOnFakeDevice(t *testing.T) {
	if os.Getenv("BERTQ_CUDA_FAKE_CHILD") != "" {
		t.Skip("already inside the fake-device child")
	}
	if testing.Short() {
		t.Skip("-short: TestCUDA on the CPU-emulated device takes about a minute")
	}
	dir := emuBuildDir(t)
	lib := filepath.Join(dir, "libcuda.so.1")
	build := exec.Command(compilerCXX(t), "-std=c++20", "-O2", "-shared", "-fPIC", "-Wall", "-Wno-unknown-pragmas", "-o", lib, "fakecuda.cc")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the fake CUDA libraries: %v\n%s", err, out)
	}
	for _, name := range []string{"libnvrtc.so.13", "libcublasLt.so.13"} {
		if err := os.Symlink("libcuda.so.1", filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"-test.run", "^TestCUDA$", "-test.v", "-test.count", "1"}
	child := exec.Command(os.Args[0], args...)
	child.Env = append(os.Environ(),
		EnvLibDir+"="+dir,
		"BERTQ_CUDA_FAKE_CHILD=1",
		// The emulator switches stacks inside C calls; keep Go's preemption
		// signals away from them.
		"GODEBUG=asyncpreemptoff=1",
	)
	out, err := child.CombinedOutput()
	text := string(out)
	if err != nil || !strings.Contains(text, "--- PASS: TestCUDA/GPU") {
		t.Fatalf("TestCUDA on the fake device: %v\n%s", err, text)
	}
	var summary []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, "--- ") || strings.Contains(line, "max |cuda") {
			summary = append(summary, line)
		}
	}
	t.Logf("TestCUDA on the fake device:\n%s", strings.Join(summary, "\n"))
}
