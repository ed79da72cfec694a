//go:build linux

package worker_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/cpuset"
	"github.com/bertq/bertq/internal/cpuset/cpusettest"
	"github.com/bertq/bertq/worker"
)

// pinModel is a fake model whose runners pin themselves the way the oneDNN
// runner does: a locked OS thread per runner, sched_setaffinity to its core.
type pinModel struct {
	*fakeModel
	mu   sync.Mutex
	tids map[int]int // runner thread id → the core it was given
}

func (m *pinModel) NewRunner(core int) (engine.Runner, error) {
	ready := make(chan error, 1)
	quit := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the runner
		if core >= 0 {
			var set unix.CPUSet
			set.Set(core)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				ready <- fmt.Errorf("pinning to core %d: %w", core, err)
				return
			}
		}
		m.mu.Lock()
		m.tids[unix.Gettid()] = core
		m.mu.Unlock()
		ready <- nil
		<-quit
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return &pinRunner{fakeRunner{m.fakeModel}, quit}, nil
}

type pinRunner struct {
	fakeRunner
	quit chan struct{}
}

func (r *pinRunner) Close() error { close(r.quit); return nil }

const pinChildEnv = "BERTQ_TEST_PIN_CHILD"

// TestPinChild is the process TestPinningStaysInMask starts under taskset: it
// serves a worker whose runners pin themselves, then reports every thread's
// allowed CPUs. Run on its own it has nothing to do.
func TestPinChild(t *testing.T) {
	spec := os.Getenv(pinChildEnv)
	if spec == "" {
		t.Skip("helper process of TestPinningStaysInMask; runs only when started by it")
	}
	parallel, cpus, _ := strings.Cut(spec, ";")
	n, err := strconv.Atoi(parallel)
	if err != nil {
		t.Fatal(err)
	}
	opts := []worker.Option{worker.WithParallel(n)}
	if cpus != "" {
		list, err := cpuset.Parse(cpus)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, worker.WithCPUs(list))
	}
	e := newEnv(t, false)
	m := &pinModel{fakeModel: newFake(4, 16), tids: map[int]int{}}
	startWorker(t, e, m, fakeInfo("pin"), opts...)
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		got := len(m.tids)
		m.mu.Unlock()
		if got == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d runners started", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.mu.Lock()
	for tid, core := range m.tids {
		fmt.Printf("runner %d core %d\n", tid, core)
	}
	m.mu.Unlock()
	threads, err := cpusettest.Threads(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for tid, cpus := range threads {
		fmt.Printf("thread %d cpus %s\n", tid, cpuset.Format(cpus))
	}
}

// TestPinningStaysInMask runs a worker under `taskset -c <mask>` and checks
// that every thread of the process, runners included, stays inside the mask,
// and that runner i sits on the i-th CPU of the mask (or of WithCPUs' list).
func TestPinningStaysInMask(t *testing.T) {
	taskset, err := exec.LookPath("taskset")
	if err != nil {
		t.Fatal("taskset not found: install util-linux (apt-get install util-linux)")
	}
	allowed, err := cpuset.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	if len(allowed) < 2 {
		t.Skipf("needs two CPUs in the affinity mask to restrict it; this process has %s", cpuset.Format(allowed))
	}
	// The last CPUs of the mask: never CPU 0, where the old pinning (loop i
	// → CPU i mod NumCPU) would have put the runners.
	last, pair := allowed[len(allowed)-1], allowed[len(allowed)-2:]
	for _, tc := range []struct {
		name, mask, cpus string
		parallel         int
		want             []int // the set of runner cores
	}{
		{"one CPU, two runners", strconv.Itoa(last), "", 2, []int{last}},
		{"two CPUs, three runners", cpuset.Format(pair), "", 3, pair},
		{"a chosen CPU inside the mask", cpuset.Format(pair), strconv.Itoa(last), 2, []int{last}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mask, _ := cpuset.Parse(tc.mask)
			cmd := exec.Command(taskset, "-c", tc.mask, os.Args[0], "-test.run=^TestPinChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d;%s", pinChildEnv, tc.parallel, tc.cpus))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			var runners, threads int
			cores := map[int]int{}
			sc := bufio.NewScanner(bytes.NewReader(out))
			for sc.Scan() {
				var tid, core int
				var list string
				switch {
				case sscan(sc.Text(), "runner %d core %d", &tid, &core):
					runners++
					cores[core]++
				case sscan(sc.Text(), "thread %d cpus %s", &tid, &list):
					threads++
					cpus, err := cpuset.Parse(list)
					if err != nil {
						t.Fatal(err)
					}
					if err := cpuset.Within(cpus, mask); err != nil {
						t.Errorf("thread %d may run on %s, outside the mask %s", tid, list, tc.mask)
					}
				}
			}
			if runners != tc.parallel || threads < runners {
				t.Fatalf("child reported %d runners, %d threads:\n%s", runners, threads, out)
			}
			got := make([]int, 0, len(cores))
			for c := range cores {
				got = append(got, c)
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("runner cores %v, want %v", cores, tc.want)
			}
		})
	}
}

func sscan(line, format string, args ...any) bool {
	n, err := fmt.Sscanf(line, format, args...)
	return err == nil && n == len(args)
}

// TestCPUsOutsideMask: a CPU list outside the affinity mask is refused.
func TestCPUsOutsideMask(t *testing.T) {
	allowed, err := cpuset.Allowed()
	if err != nil {
		t.Fatal(err)
	}
	nc := newUnprovisioned(t)
	outside := allowed[len(allowed)-1] + 1
	_, err = worker.New(nc, newFake(4, 16), worker.WithInfo(fakeInfo("m")), worker.WithCPUs([]int{outside}))
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("CPU %d is outside the process's affinity mask %s", outside, cpuset.Format(allowed))) {
		t.Errorf("New with CPU %d: %v", outside, err)
	}
	if _, err := worker.New(nc, newFake(4, 16), worker.WithInfo(fakeInfo("m")), worker.WithCPUs([]int{outside}), worker.WithPinning(false)); err != nil {
		t.Errorf("unpinned: %v", err)
	}
}
