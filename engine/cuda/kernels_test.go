package cuda

import (
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestKernelSourcesEmbedded(t *testing.T) {
	entries, err := kernelFS.ReadDir("kernels")
	if err != nil {
		t.Fatal(err)
	}
	var onDisk []string
	for _, e := range entries {
		onDisk = append(onDisk, e.Name())
	}
	listed := slices.Clone(kernelFiles)
	slices.Sort(listed)
	if !slices.Equal(onDisk, listed) {
		t.Fatalf("kernels/ holds %v but kernelFiles lists %v: add new .cu files to kernelFiles", onDisk, kernelFiles)
	}
	src, err := kernelSource()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range kernelFiles {
		b, _ := kernelFS.ReadFile("kernels/" + name)
		if len(strings.TrimSpace(string(b))) == 0 {
			t.Errorf("kernels/%s is empty", name)
		}
		if !strings.Contains(src, "#line 1 \""+name+"\"") {
			t.Errorf("kernel source lacks %s", name)
		}
	}
	if strings.Contains(src, "#include") {
		t.Error("kernels must not #include headers: NVRTC has no include path here")
	}
}

func TestKernelEntryPointsDefined(t *testing.T) {
	src, err := kernelSource()
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`extern "C" __global__ void (\w+)\(`)
	var defined []string
	for _, m := range re.FindAllStringSubmatch(src, -1) {
		defined = append(defined, m[1])
	}
	for _, name := range kernelNames() {
		if !slices.Contains(defined, name) {
			t.Errorf("kernel %s is looked up but not defined (defined: %v)", name, defined)
		}
	}
}

// The attention limits in Go must match the #defines the kernel is built with.
func TestAttentionLimitsMatchSource(t *testing.T) {
	b, err := kernelFS.ReadFile("kernels/attention.cu")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"ATT_QW": attQW, "ATT_DMAX": attDMax, "ATT_KTMAX": attKTMax} {
		re := regexp.MustCompile(`#define ` + name + ` (\d+)`)
		m := re.FindStringSubmatch(string(b))
		if m == nil || m[1] != strconv.Itoa(want) {
			t.Errorf("attention.cu: %s = %v, Go expects %d", name, m, want)
		}
	}
}

func TestAttentionTile(t *testing.T) {
	for _, d := range []int{16, 32, 64, 96, 128} {
		kt, smem := attentionTile(d)
		if kt < 8 || kt > attKTMax || smem > smemLimit || smem != attentionSmem(d, kt) {
			t.Errorf("d=%d: tile %d with %d bytes of shared memory", d, kt, smem)
		}
		if kt < attKTMax && attentionSmem(d, kt*2) <= smemLimit {
			t.Errorf("d=%d: tile %d is smaller than needed", d, kt)
		}
	}
	if kt, _ := attentionTile(64); kt != 64 {
		t.Errorf("BERT's head size 64 should use the largest tile, got %d", kt)
	}
}

func TestPickArch(t *testing.T) {
	supported := []int{50, 60, 70, 75, 80, 86, 89, 90}
	for _, c := range []struct {
		cc   int
		want string
	}{{90, "sm_90"}, {80, "sm_80"}, {100, "compute_90"}, {87, "compute_86"}} {
		got, err := pickArch(c.cc, supported)
		if err != nil || got != c.want {
			t.Errorf("pickArch(%d) = %q, %v; want %q", c.cc, got, err, c.want)
		}
	}
	if _, err := pickArch(35, supported); err == nil {
		t.Error("pickArch(35) should fail: no architecture at or below it")
	}
	for _, o := range nvrtcOptions("sm_90") {
		if strings.Contains(o, "fast_math") || strings.Contains(o, "fast-math") {
			t.Errorf("option %q: the erf/exp paths need accurate math", o)
		}
	}
}

// testKernelsCompile runs NVRTC on the embedded kernels when the library can
// be found (it needs no GPU), so CUDA C mistakes show up before a GPU run.
func testKernelsCompile(t *testing.T) {
	r := libs()
	if r.status.NVRTC.Err != nil {
		t.Skipf("NVRTC not found, kernels not compiled here (set %s to a folder with libnvrtc.so.*): %v", EnvLibDir, r.status.NVRTC.Err)
	}
	archs, err := r.supportedArchs()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s from %s supports %v", r.status.NVRTC.Version, r.status.NVRTC.Path, archs)
	src, err := kernelSource()
	if err != nil {
		t.Fatal(err)
	}
	for _, cc := range []int{80, 90} {
		arch, err := pickArch(cc, archs)
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.compileSource(src, arch)
		if err != nil {
			t.Fatalf("%s: %v", arch, err)
		}
		if c.log != "" {
			t.Errorf("%s: compiler log not empty (warnings?):\n%s", arch, c.log)
		}
		t.Logf("%s: %d-byte image", arch, len(c.image))
	}
	// PTX too: the fallback for devices newer than NVRTC.
	ptxArch := "compute_" + strconv.Itoa(archs[len(archs)-1])
	c, err := r.compileSource(src, ptxArch)
	if err != nil {
		t.Fatalf("%s: %v", ptxArch, err)
	}
	for _, name := range kernelNames() {
		if !strings.Contains(string(c.image), ".entry "+name+"(") {
			t.Errorf("PTX lacks entry %s", name)
		}
	}
}
