package cuda

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// Device describes one GPU the driver reports.
type Device struct {
	Index        int
	Name         string
	Major, Minor int // compute capability
	MemoryBytes  uint64
	SMs          int
}

func (d Device) String() string {
	return fmt.Sprintf("%d: %s (sm_%d%d, %d SMs, %.1f GiB)", d.Index, d.Name, d.Major, d.Minor, d.SMs, float64(d.MemoryBytes)/(1<<30))
}

// Status is what the backend found on this machine: each library with where
// it was loaded from or why not, the driver's CUDA version and the devices.
type Status struct {
	Driver, NVRTC, CublasLt Library
	DriverVersion           int // e.g. 13000 for CUDA 13.0
	Devices                 []Device
	// Err is nil when the backend can run, else the first thing missing.
	Err error
}

// String is a multi-line report for diagnostics.
func (s Status) String() string {
	var b strings.Builder
	if s.Err != nil {
		fmt.Fprintf(&b, "cuda: unavailable: %v\n", s.Err)
	} else {
		fmt.Fprintf(&b, "cuda: available\n")
	}
	for _, l := range []Library{s.Driver, s.NVRTC, s.CublasLt} {
		if l.Name == "" {
			continue
		}
		fmt.Fprintf(&b, "  %s\n", l)
	}
	if s.DriverVersion > 0 {
		fmt.Fprintf(&b, "  driver supports CUDA %d.%d\n", s.DriverVersion/1000, s.DriverVersion%1000/10)
	}
	for _, d := range s.Devices {
		fmt.Fprintf(&b, "  device %s\n", d)
	}
	return b.String()
}

// runtimeLibs is the process-wide state: loaded libraries and bound calls.
type runtimeLibs struct {
	drv    driverAPI
	nv     nvrtcAPI
	lt     cublasLtAPI
	status Status

	mu      sync.Mutex
	modules map[int]*compiled // kernel image per compute capability
}

var (
	probeOnce sync.Once
	probed    *runtimeLibs
)

// libs loads and probes the libraries once per process.
func libs() *runtimeLibs {
	probeOnce.Do(func() {
		probed = probe(searchDirs(os.Getenv(EnvLibDir), os.Getenv("LD_LIBRARY_PATH")))
	})
	return probed
}

// Probe reports what the backend found on this machine (cached: the
// libraries are searched once per process).
func Probe() Status { return libs().status }

func probe(dirs []string) *runtimeLibs {
	r := &runtimeLibs{modules: map[int]*compiled{}}
	st := &r.status
	fail := func(err error) {
		if st.Err == nil {
			st.Err = err
		}
	}
	st.Driver = find(specDriver, dirs, 0, nil)
	if st.Driver.Err != nil {
		fail(errNotLoaded(st.Driver))
	} else if err := bind(st.Driver.Path, st.Driver.handle, r.drv.table()); err != nil {
		st.Driver.Err = err
		fail(fmt.Errorf("%w: %v", ErrNoDriver, err))
	}
	maxMajor := 0
	if st.Err == nil {
		if err := r.check("cuInit", r.drv.cuInit(0)); err != nil {
			fail(fmt.Errorf("%w: %v", ErrNoDevice, err))
		}
	}
	if st.Err == nil {
		var v int32
		if err := r.check("cuDriverGetVersion", r.drv.cuDriverGetVersion(&v)); err == nil {
			st.DriverVersion = int(v)
			maxMajor = int(v) / 1000
			st.Driver.Version = fmt.Sprintf("CUDA %d.%d", v/1000, v%1000/10)
		}
		devs, err := r.devices()
		st.Devices = devs
		if err != nil {
			fail(fmt.Errorf("%w: %v", ErrNoDevice, err))
		} else if len(devs) == 0 {
			fail(fmt.Errorf("%w: the driver reports 0 devices", ErrNoDevice))
		}
	}
	// The toolkit libraries are looked for even without a driver, so that one
	// report names everything a machine lacks. Only majors the driver can run
	// are taken.
	st.NVRTC = find(specNVRTC, dirs, maxMajor, preloadNVRTCBuiltins)
	if st.NVRTC.Err == nil {
		if err := bind(st.NVRTC.Path, st.NVRTC.handle, r.nv.table()); err != nil {
			st.NVRTC.Err = err
		} else {
			var maj, min int32
			if r.nv.nvrtcVersion(&maj, &min) == 0 {
				st.NVRTC.Version = fmt.Sprintf("NVRTC %d.%d", maj, min)
			}
		}
	}
	if st.NVRTC.Err != nil {
		fail(errNotLoaded(st.NVRTC))
	}
	st.CublasLt = find(specLt, dirs, maxMajor, nil)
	if st.CublasLt.Err == nil {
		if err := bind(st.CublasLt.Path, st.CublasLt.handle, r.lt.table()); err != nil {
			st.CublasLt.Err = err
		} else {
			v := r.lt.cublasLtGetVersion()
			st.CublasLt.Version = fmt.Sprintf("cuBLASLt %d.%d.%d", v/10000, v%10000/100, v%100)
		}
	}
	if st.CublasLt.Err != nil {
		fail(errNotLoaded(st.CublasLt))
	}
	return r
}

func (r *runtimeLibs) devices() ([]Device, error) {
	var n int32
	if err := r.check("cuDeviceGetCount", r.drv.cuDeviceGetCount(&n)); err != nil {
		return nil, err
	}
	var out []Device
	for i := int32(0); i < n; i++ {
		var dev int32
		if err := r.check("cuDeviceGet", r.drv.cuDeviceGet(&dev, i)); err != nil {
			return out, err
		}
		d := Device{Index: int(i)}
		name := make([]byte, 256)
		if r.drv.cuDeviceGetName(&name[0], int32(len(name)), dev) == 0 {
			d.Name = cString(&name[0])
		}
		attr := func(a int32) int {
			var v int32
			r.drv.cuDeviceGetAttribute(&v, a, dev)
			return int(v)
		}
		d.Major, d.Minor = attr(cuDevAttrCCMajor), attr(cuDevAttrCCMinor)
		d.SMs = attr(cuDevAttrMultiprocessors)
		var mem uintptr
		if r.drv.cuDeviceTotalMem(&mem, dev) == 0 {
			d.MemoryBytes = uint64(mem)
		}
		out = append(out, d)
	}
	return out, nil
}

// check turns a CUresult into an error naming the call.
func (r *runtimeLibs) check(call string, res cuResult) error {
	if res == 0 {
		return nil
	}
	e := &driverError{call: call, code: res}
	if r.drv.cuGetErrorString != nil {
		var p *byte
		if r.drv.cuGetErrorString(res, &p) == 0 {
			e.desc = cString(p)
		}
	}
	return e
}

func ltCheck(call string, res cublasStatus) error {
	if res == 0 {
		return nil
	}
	return &cublasError{call: call, code: res}
}
