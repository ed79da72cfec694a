package faults_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/compiler"
	"github.com/bertq/bertq/engine"
	_ "github.com/bertq/bertq/engine/gocpu"
	_ "github.com/bertq/bertq/engine/onednn"
	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/internal/testbuf"
	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/worker"
)

// model is the name the tiny artifact is served under.
const model = "tiny"

var (
	workDir string // removed when the test binary ends

	artOnce sync.Once
	artPath string
	artErr  error

	binOnce sync.Once
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	d, err := os.MkdirTemp("", "bertq-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workDir = d
	code := m.Run()
	os.RemoveAll(d)
	os.Exit(code)
}

// long reports whether the long variants were asked for (BERTQ_LONG=1).
func long() bool { return os.Getenv("BERTQ_LONG") == "1" }

// pick returns short, or long under BERTQ_LONG=1.
func pick(short, longer int) int {
	if long() {
		return longer
	}
	return short
}

// device is the engine backend the workers use.
func device() string {
	if d := os.Getenv("BERTQ_FAULTS_DEVICE"); d != "" {
		return d
	}
	return "auto"
}

// tinyArtifact compiles tiny-fp32 for batch 4 × seq 32 fp32, once per binary.
func tinyArtifact(t testing.TB) string {
	t.Helper()
	dir := fixtures.ModelDir(t, "tiny-fp32")
	artOnce.Do(func() {
		src, err := compiler.LoadSource(dir)
		if err != nil {
			artErr = err
			return
		}
		p := filepath.Join(workDir, "tiny.bqa")
		opts := compiler.Options{Batch: 4, Seq: 32, Precision: artifact.FP32, GELU: "auto", Verify: true, Backend: device()}
		if _, artErr = compiler.Compile(src, p, opts); artErr == nil {
			artPath = p
		}
	})
	if artErr != nil {
		t.Fatalf("compiling tiny-fp32: %v", artErr)
	}
	return artPath
}

// bertqBin builds cmd/bertq once per binary, so that faults hit real processes.
func bertqBin(t testing.TB) string {
	t.Helper()
	binOnce.Do(func() {
		goTool, err := exec.LookPath("go")
		if err != nil {
			binErr = fmt.Errorf("the go tool is not on PATH (needed to build cmd/bertq): %w", err)
			return
		}
		p := filepath.Join(workDir, "bertq")
		out, err := exec.Command(goTool, "build", "-o", p, "github.com/bertq/bertq/cmd/bertq").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build cmd/bertq: %v\n%s", err, out)
			return
		}
		binPath = p
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

// tinyModel is the tiny artifact loaded in this process.
type tinyModel struct {
	m    engine.Model
	info worker.Info
}

func loadTiny(t *testing.T) *tinyModel {
	t.Helper()
	f, err := artifact.Open(tinyArtifact(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	b, err := engine.Get(device())
	if err != nil {
		t.Fatal(err)
	}
	m, err := b.Load(f, engine.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	info, err := worker.InfoFromArtifact(model, f)
	if err != nil {
		t.Fatal(err)
	}
	return &tinyModel{m: m, info: info}
}

func pairKey(a, b string) string { return a + "\x00" + b }

// expect runs each pair straight through the engine, four to a batch, and
// returns its logits by pairKey: what a worker's reply must say.
func (tm *tinyModel) expect(t *testing.T, pairs []producer.Pair) map[string][]float32 {
	t.Helper()
	s := tm.m.Spec()
	r, err := tm.m.NewRunner(-1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	out := map[string][]float32{}
	logits := make([]float32, s.Batch*s.Labels)
	for start := 0; start < len(pairs); start += s.Batch {
		in := engine.Input{
			InputIDs:      make([]int32, s.Batch*s.Seq),
			TokenTypeIDs:  make([]int32, s.Batch*s.Seq),
			AttentionMask: make([]int32, s.Batch*s.Seq),
		}
		for slot := 0; slot < s.Batch; slot++ {
			p := pairs[(start+slot)%len(pairs)]
			enc, err := tm.info.Tokenizer.EncodePair(p.A, p.B, s.Seq)
			if err != nil {
				t.Fatal(err)
			}
			copy(in.InputIDs[slot*s.Seq:], enc.InputIDs)
			copy(in.TokenTypeIDs[slot*s.Seq:], enc.TokenTypeIDs)
			copy(in.AttentionMask[slot*s.Seq:], enc.AttentionMask)
		}
		if err := r.Run(in, logits); err != nil {
			t.Fatal(err)
		}
		for slot := 0; slot < s.Batch && start+slot < len(pairs); slot++ {
			p := pairs[start+slot]
			out[pairKey(p.A, p.B)] = append([]float32(nil), logits[slot*s.Labels:(slot+1)*s.Labels]...)
		}
	}
	return out
}

// sameLogits compares within a float32 rounding margin.
func sameLogits(got, want []float32) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if math.Abs(float64(got[i]-want[i])) > 1e-4*(1+math.Abs(float64(want[i]))) {
			return false
		}
	}
	return true
}

// runWorker serves tm in this process until the test ends (or stop).
type runWorker struct {
	w      *worker.Worker
	cancel context.CancelFunc
	done   chan error
	once   sync.Once
}

func startWorker(t *testing.T, nc *nats.Conn, tm *tinyModel, opts ...worker.Option) *runWorker {
	t.Helper()
	opts = append([]worker.Option{worker.WithInfo(tm.info), worker.WithPinning(false),
		worker.WithFetchWait(200 * time.Millisecond), worker.WithStatsInterval(0)}, opts...)
	w, err := worker.New(nc, tm.m, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw := &runWorker{w: w, cancel: cancel, done: make(chan error, 1)}
	go func() { rw.done <- w.Run(ctx) }()
	t.Cleanup(func() { rw.stop(t) })
	return rw
}

// stop drains the worker and waits for Run to return.
func (rw *runWorker) stop(t *testing.T) {
	rw.once.Do(func() {
		rw.cancel()
		select {
		case err := <-rw.done:
			if err != nil {
				t.Errorf("worker %s: %v", rw.w.ID(), err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("worker %s did not drain within 30 s", rw.w.ID())
		}
	})
}

// connect dials urls (in this order) with the reconnect settings a service
// would use: forever, quickly.
func connect(t *testing.T, name string, urls ...string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(strings.Join(urls, ","), nats.Name(name), nats.DontRandomize(),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func newJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// single is one embedded broker, provisioned, with the tiny artifact in the
// model bucket and an intake, as `bertq broker` runs it.
type single struct {
	b     *broker.Broker
	url   string
	store string
	nc    *nats.Conn
	js    jetstream.JetStream
}

func startSingle(t *testing.T, popts ...broker.ProvisionOption) *single {
	t.Helper()
	s := &single{store: t.TempDir()}
	b, err := broker.Start(broker.WithListen("127.0.0.1:-1"), broker.WithStoreDir(s.store))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(); b.WaitForShutdown() })
	s.b, s.url = b, b.ClientURL()
	s.nc = connect(t, "faults-test", s.url)
	s.js = newJS(t, s.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, s.js, popts...); err != nil {
		t.Fatal(err)
	}
	putArtifact(t, s.js)
	inc := connect(t, "faults-intake", s.url)
	in, err := broker.StartIntake(inc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Stop() })
	// StartIntake does not wait for the server to register its endpoints: a
	// request sent at once could find no intake.
	if err := inc.Flush(); err != nil {
		t.Fatal(err)
	}
	return s
}

// putArtifact stores the tiny artifact as model in the model bucket.
func putArtifact(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	f, err := os.Open(tinyArtifact(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	obs, err := js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: model}, f); err != nil {
		t.Fatal(err)
	}
}

// consumerInfo reads the workers' shared consumer, retrying through an
// election.
func consumerInfo(t *testing.T, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		c, err := js.Consumer(ctx, schemas.InferStream, schemas.WorkerDurable(model))
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = c.Info(ctx)
		}
		cancel()
		if err == nil {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer info: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitConsumer waits for the consumer to exist (a worker created it).
func waitConsumer(t *testing.T, js jetstream.JetStream) { consumerInfo(t, js) }

// waitIdle waits until the consumer has nothing pending and nothing unacked.
func waitIdle(t *testing.T, js jetstream.JetStream, within time.Duration) *jetstream.ConsumerInfo {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		info := consumerInfo(t, js)
		if info.NumPending == 0 && info.NumAckPending == 0 {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("consumer not idle after %s: %d pending, %d unacked, %d redelivered", within, info.NumPending, info.NumAckPending, info.NumRedelivered)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamMsgs is how many requests the queue holds.
func streamMsgs(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, schemas.InferStream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().State.Msgs
}

// waitFor polls cond until it holds, failing with what after within.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// proc is a child process of the test, killed when the test ends.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *testbuf.Buffer
	done chan struct{}
	err  error // from Wait, once done is closed
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &testbuf.Buffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		if !p.exited() {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s:\n%s", name, tail(p.out.String(), 1500))
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the output contains s; it fails if the process exits.
func (p *proc) waitLog(t *testing.T, s string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !strings.Contains(p.out.String(), s) {
		if p.exited() {
			t.Fatalf("%s exited (%v) before logging %q:\n%s", p.name, p.err, s, tail(p.out.String(), 3000))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s:\n%s", p.name, s, within, tail(p.out.String(), 3000))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// signal sends sig and waits for the process to end; it returns the exit code
// (-1 when a signal ended it).
func (p *proc) signal(t *testing.T, sig syscall.Signal, within time.Duration) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("%s still running %s after %v:\n%s", p.name, within, sig, tail(p.out.String(), 3000))
	}
	return p.cmd.ProcessState.ExitCode()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// workerProc starts `bertq worker` for the tiny model on url; it returns
// once the worker serves.
func workerProc(t *testing.T, url, id, cache string, extra ...string) *proc {
	t.Helper()
	args := append([]string{"worker", "--nats", url, "--model", model, "--cache", cache, "--device", device(),
		"--parallel", "2", "--metrics", "", "--id", id, "--log-json"}, extra...)
	p := startProc(t, id, bertqBin(t), args...)
	p.waitLog(t, "worker serving", 60*time.Second)
	return p
}

// seen is what came back for one request id.
type seen struct {
	n       int
	workers []string
	code    string // of the first reply: "" for a prediction
	rep     schemas.InferReply
}

// tally counts every reply on a subject pattern by request id, across
// producer rounds, so that a redelivery answered after its round ended still
// counts as a duplicate.
type tally struct {
	mu       sync.Mutex
	byID     map[string]*seen
	byWorker map[string]int
	bad      int // undecodable
}

func newTally(t *testing.T, nc *nats.Conn, subject string) *tally {
	t.Helper()
	tl := &tally{byID: map[string]*seen{}, byWorker: map[string]int{}}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var r schemas.InferReply
		enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
		err := schemas.Unmarshal(enc, m.Data, &r)
		tl.mu.Lock()
		defer tl.mu.Unlock()
		if err != nil || r.ID == "" {
			tl.bad++
			return
		}
		s := tl.byID[r.ID]
		if s == nil {
			s = &seen{rep: r}
			if r.Error != nil {
				s.code = r.Error.Code
			}
			tl.byID[r.ID] = s
		}
		s.n++
		s.workers = append(s.workers, r.Worker)
		if r.Worker != "" && r.Error == nil {
			tl.byWorker[r.Worker]++
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return tl
}

func (tl *tally) distinct() int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return len(tl.byID)
}

func (tl *tally) answeredBy(w string) int {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.byWorker[w]
}

// dups is replies beyond the first per id, and the ids answered twice by
// one and the same worker (never expected: a redelivery goes elsewhere).
func (tl *tally) dups() (extra int, sameWorker []string) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for id, s := range tl.byID {
		extra += s.n - 1
		ws := map[string]bool{}
		for _, w := range s.workers {
			if ws[w] {
				sameWorker = append(sameWorker, id)
				break
			}
			ws[w] = true
		}
	}
	sort.Strings(sameWorker)
	return extra, sameWorker
}

func (tl *tally) get(id string) *seen {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return tl.byID[id]
}

// load runs producer rounds back to back until finish: a steady load whose
// every round completes, so a round's figures are never cut short.
type load struct {
	stop   chan struct{}
	done   chan struct{}
	mu     sync.Mutex
	sum    producer.Summary
	rounds int
	err    error
}

func startLoad(t *testing.T, nc *nats.Conn, opts ...producer.Option) *load {
	t.Helper()
	l := &load{stop: make(chan struct{}), done: make(chan struct{}), sum: producer.Summary{ErrorCodes: map[string]int{}}}
	go func() {
		defer close(l.done)
		for {
			select {
			case <-l.stop:
				return
			default:
			}
			s, err := producer.Run(context.Background(), nc, opts...)
			l.mu.Lock()
			if s != nil {
				l.add(s)
			}
			l.err = err
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		select {
		case <-l.stop:
		default:
			close(l.stop)
		}
	})
	return l
}

func (l *load) add(s *producer.Summary) {
	l.rounds++
	l.sum.Sent += s.Sent
	l.sum.Answered += s.Answered
	l.sum.Errors += s.Errors
	l.sum.Lost += s.Lost
	l.sum.Late += s.Late
	l.sum.Duplicates += s.Duplicates
	l.sum.Resends += s.Resends
	l.sum.Unmatched += s.Unmatched
	for c, n := range s.ErrorCodes {
		l.sum.ErrorCodes[c] += n
	}
}

// finish lets the running round complete and returns the totals.
func (l *load) finish(t *testing.T, within time.Duration) producer.Summary {
	t.Helper()
	close(l.stop)
	select {
	case <-l.done:
	case <-time.After(within):
		t.Fatalf("the producer's last round did not end within %s", within)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		t.Fatalf("producer round %d: %v", l.rounds, l.err)
	}
	return l.sum
}

// codes formats error codes as code:n,code:n.
func codes(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	return strings.Join(parts, ",")
}

// freePorts reserves n loopback ports and releases them for a server to take.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ls := make([]net.Listener, n)
	ports := make([]int, n)
	for i := range ls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls[i], ports[i] = l, l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
