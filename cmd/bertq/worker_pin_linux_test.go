//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/cpuset"
	"github.com/bertq/bertq/internal/cpuset/cpusettest"
	"github.com/bertq/bertq/internal/testbuf"
)

// cliPinBackend is cliFakeBackend with runners that pin themselves as the
// oneDNN ones do: a locked OS thread each, sched_setaffinity to its core.
type cliPinBackend struct{ cliFakeBackend }

func init() { engine.Register(cliPinBackend{}) }

func (cliPinBackend) Name() string { return "clitest-pin" }
func (b cliPinBackend) Load(f *artifact.File, o engine.Options) (engine.Model, error) {
	m, err := b.cliFakeBackend.Load(f, o)
	if err != nil {
		return nil, err
	}
	return &cliPinModel{m.(*cliFakeModel)}, nil
}

type cliPinModel struct{ *cliFakeModel }

func (m *cliPinModel) NewRunner(core int) (engine.Runner, error) {
	ready := make(chan error, 1)
	quit := make(chan struct{})
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the runner
		if core >= 0 {
			var set unix.CPUSet
			set.Set(core)
			if err := unix.SchedSetaffinity(0, &set); err != nil {
				ready <- err
				return
			}
		}
		ready <- nil
		<-quit
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return &cliPinRunner{m.cliFakeModel, quit}, nil
}

type cliPinRunner struct {
	*cliFakeModel
	quit chan struct{}
}

func (r *cliPinRunner) Close() error { close(r.quit); return nil }

// TestWorkerCommandPinsInsideMask starts `bertq worker --parallel 2` under
// taskset and checks, in /proc, that every thread stays inside the mask and
// that the runners sit on the CPUs asked for; --cpus outside the mask is
// refused with the reason.
func TestWorkerCommandPinsInsideMask(t *testing.T) {
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
	br, js := svcTestBroker(t)
	if err := broker.Provision(context.Background(), js); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "pin.bqa")
	svcHeaderOnlyArtifact(t, path, false)
	// The last CPUs of the mask: never CPU 0, where pinning by loop index
	// would put the runners.
	last := allowed[len(allowed)-1]
	pair := cpuset.Format(allowed[len(allowed)-2:])
	bertq := func(mask string, args ...string) (*exec.Cmd, *testbuf.Buffer) {
		args = append([]string{"-c", mask, os.Args[0], "worker", "--nats", br.ClientURL(), "--artifact", path,
			"--device", "clitest-pin", "--parallel", "2", "--metrics", "", "--log-json"}, args...)
		cmd := exec.Command(taskset, args...)
		cmd.Env = append(os.Environ(), asBertqEnv+"=1")
		out := &testbuf.Buffer{}
		cmd.Stdout, cmd.Stderr = out, out
		return cmd, out
	}
	for _, tc := range []struct {
		name, mask string
		args       []string
	}{
		{"the mask's one CPU", strconv.Itoa(last), nil},
		{"a CPU chosen inside the mask", pair, []string{"--cpus", strconv.Itoa(last)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mask, _ := cpuset.Parse(tc.mask)
			cmd, out := bertq(tc.mask, tc.args...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- cmd.Wait() }()
			defer cmd.Process.Kill()
			for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "worker serving"); {
				select {
				case err := <-exited:
					t.Fatalf("bertq worker exited: %v\n%s", err, out.String())
				case <-time.After(20 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatalf("bertq worker never served:\n%s", out.String())
				}
			}
			threads, err := cpusettest.Threads(cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			onLast := 0
			for tid, cpus := range threads {
				if err := cpuset.Within(cpus, mask); err != nil {
					t.Errorf("thread %d may run on %s, outside the mask %s", tid, cpuset.Format(cpus), tc.mask)
				}
				if slices.Equal(cpus, []int{last}) {
					onLast++
				}
			}
			if onLast < 2 {
				t.Errorf("%d threads pinned to CPU %d, want the 2 runners: %v", onLast, last, threads)
			}
			if !strings.Contains(out.String(), `"cpus":"`+strconv.Itoa(last)+","+strconv.Itoa(last)+`"`) {
				t.Errorf("the start-up line does not show the runners on %d,%d:\n%s", last, last, out.String())
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := <-exited; err != nil {
				t.Errorf("after SIGTERM: %v\n%s", err, out.String())
			}
		})
	}
	// As in a container whose cpuset leaves out CPU 0: asking for it fails
	// at once, saying why.
	cmd, out := bertq(strconv.Itoa(last), "--cpus", "0")
	err = cmd.Run()
	want := "--cpus 0: CPU 0 is outside the process's affinity mask " + strconv.Itoa(last)
	if cmd.ProcessState.ExitCode() != 2 || !strings.Contains(out.String(), want) {
		t.Errorf("--cpus outside the mask: %v, want exit 2 and %q:\n%s", err, want, out.String())
	}
}
