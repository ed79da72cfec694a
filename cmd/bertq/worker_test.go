package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/artifact"
	"github.com/bertq/bertq/bert"
	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/engine"
	"github.com/bertq/bertq/internal/natstest"
	"github.com/bertq/bertq/internal/testbuf"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/tokenizer"
)

// cliFakeBackend runs any artifact as a constant classifier, so that the
// worker command can be driven without a compiled model.
type cliFakeBackend struct{}

func init() { engine.Register(cliFakeBackend{}) }

func (cliFakeBackend) Name() string     { return "clitest-fake" }
func (cliFakeBackend) Available() error { return nil }
func (cliFakeBackend) Load(f *artifact.File, _ engine.Options) (engine.Model, error) {
	h := f.Header
	return &cliFakeModel{engine.Spec{Batch: h.Batch, Seq: h.Seq, Labels: h.Model.NumLabels, Precision: h.Precision}}, nil
}

type cliFakeModel struct{ spec engine.Spec }

func (m *cliFakeModel) Spec() engine.Spec                    { return m.spec }
func (m *cliFakeModel) Backend() string                      { return "clitest-fake" }
func (m *cliFakeModel) Close() error                         { return nil }
func (m *cliFakeModel) NewRunner(int) (engine.Runner, error) { return m, nil }
func (m *cliFakeModel) Run(in engine.Input, logits []float32) error {
	for i := range logits {
		logits[i] = float32(i % m.spec.Labels)
	}
	return nil
}

// svcBG runs a command until its context is cancelled.
type svcBG struct {
	cancel context.CancelFunc
	code   chan int
	stderr *testbuf.Buffer
}

func runSvcBG(args ...string) *svcBG {
	ctx, cancel := context.WithCancel(context.Background())
	b := &svcBG{cancel: cancel, code: make(chan int, 1), stderr: &testbuf.Buffer{}}
	go func() {
		b.code <- run(ctx, args, &env{stdin: strings.NewReader(""), stdout: &testbuf.Buffer{}, stderr: b.stderr})
	}()
	return b
}

func (b *svcBG) stop(t *testing.T) int {
	t.Helper()
	b.cancel()
	select {
	case c := <-b.code:
		return c
	case <-time.After(15 * time.Second):
		t.Fatalf("command did not stop; log:\n%s", b.stderr.String())
		return -1
	}
}

// waitLog waits for re to match the command's log and returns the match.
func (b *svcBG) waitLog(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(b.stderr.String()); m != nil {
			return m
		}
		select {
		case c := <-b.code:
			t.Fatalf("command exited %d; log:\n%s", c, b.stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatalf("no %s in the log:\n%s", re, b.stderr.String())
	return nil
}

func TestBrokerCommand(t *testing.T) {
	b := runSvcBG("broker", "--listen", "127.0.0.1:-1", "--store", t.TempDir(), "--max-queue", "77", "--log-json")
	url := b.waitLog(t, regexp.MustCompile(`"url":"(nats://127\.0\.0\.1:\d+)"[^\n]*broker ready`))[1]
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	s, err := js.Stream(context.Background(), schemas.InferStream)
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.MaxMsgs != 77 {
		t.Errorf("max msgs %d", s.CachedInfo().Config.MaxMsgs)
	}
	// The intake answers: no such model.
	resp, err := nc.Request(schemas.InferSubject("none"), []byte(`{"id":"x","a":"y"}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get(schemas.HeaderErrorCode) != schemas.CodeUnknownModel {
		t.Errorf("intake reply %s %v", resp.Data, resp.Header)
	}
	nc.Close()
	if code := b.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, b.stderr.String())
	}
}

func svcTestBroker(t *testing.T) (*broker.Broker, jetstream.JetStream) {
	t.Helper()
	e := natstest.Start(t)
	return e.Broker, e.JS
}

func TestProvisionCommand(t *testing.T) {
	br, js := svcTestBroker(t)
	for i := 0; i < 2; i++ {
		var out, errb bytes.Buffer
		if code := run(context.Background(), []string{"provision", "--nats", br.ClientURL(), "--max-queue", "123"}, &env{stdout: &out, stderr: &errb}); code != 0 {
			t.Fatalf("run %d: exit %d: %s", i+1, code, errb.String())
		}
	}
	s, err := js.Stream(context.Background(), schemas.InferStream)
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.MaxMsgs != 123 {
		t.Errorf("max msgs %d", s.CachedInfo().Config.MaxMsgs)
	}
	var errb bytes.Buffer
	if code := run(context.Background(), []string{"provision", "--nats", br.ClientURL(), "--replicas", "0"}, &env{stdout: &errb, stderr: &errb}); code != 2 {
		t.Errorf("--replicas 0: exit %d", code)
	}
}

// svcHeaderOnlyArtifact is an artifact with a header and a vocabulary but no
// weights: the fake backend needs no more.
func svcHeaderOnlyArtifact(t *testing.T, path string, synthetic bool) {
	t.Helper()
	w, err := artifact.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tok := tokenizer.Default()
	w.Bytes(artifact.Vocab, tok.VocabBytes())
	cfg := bert.Config{VocabSize: tok.VocabSize(), HiddenSize: 8, NumLayers: 1, NumHeads: 1, IntermediateSize: 8,
		MaxPositions: 32, TypeVocabSize: 2, NumLabels: 2, Activation: bert.GELUExact, LayerNormEps: 1e-12}
	if err := w.Close(artifact.Header{Model: cfg, Batch: 4, Seq: 16, Precision: artifact.FP32, Activation: bert.GELUExact,
		Lowercase: true, Synthetic: synthetic, Source: "test"}); err != nil {
		t.Fatal(err)
	}
}

func TestWorkerCommand(t *testing.T) {
	br, js := svcTestBroker(t)
	ctx := context.Background()
	if err := broker.Provision(ctx, js); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(br.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	in, err := broker.StartIntake(nc)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Stop()
	dir := t.TempDir()
	path := filepath.Join(dir, "fake-model.bqa")
	svcHeaderOnlyArtifact(t, path, true)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.PutBytes(ctx, "fake-model", data); err != nil {
		t.Fatal(err)
	}

	for i, tc := range []struct {
		name string
		args []string
	}{
		{"from the bucket", []string{"--model", "fake-model", "--cache", filepath.Join(dir, "cache")}},
		{"local file", []string{"--artifact", path}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("c%d", i) // the stream de-duplicates ids
			args := append([]string{"worker", "--nats", br.ClientURL(), "--device", "clitest-fake", "--parallel", "2",
				"--metrics", "127.0.0.1:0", "--id", "cli-w"}, tc.args...)
			w := runSvcBG(args...)
			w.waitLog(t, regexp.MustCompile(`worker serving`))
			log := w.stderr.String()
			for _, want := range []string{"predictions are meaningless", "engine=clitest-fake", "/metrics"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q:\n%s", want, log)
				}
			}
			resp, err := nc.Request(schemas.InferSubject("fake-model"), []byte(`{"id":"`+id+`","a":"hello","b":"world"}`), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var r schemas.InferReply
			if err := schemas.Unmarshal(schemas.JSON, resp.Data, &r); err != nil {
				t.Fatal(err)
			}
			if r.Error != nil || r.ID != id || r.Worker != "cli-w" || !r.Synthetic || r.Message != "paraphrase" {
				t.Errorf("reply %+v", r)
			}
			if code := w.stop(t); code != 0 {
				t.Fatalf("exit %d:\n%s", code, w.stderr.String())
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(dir, "cache")); len(entries) != 1 {
		t.Errorf("cache holds %d entries", len(entries))
	}

	// Usage errors and a clear refusal of a damaged artifact.
	var errb bytes.Buffer
	if code := run(ctx, []string{"worker", "--nats", br.ClientURL()}, &env{stdout: &errb, stderr: &errb}); code != 2 {
		t.Errorf("no --model: exit %d", code)
	}
	bad := bytes.Clone(data)
	bad[len(bad)/3] ^= 1
	if _, err := obs.PutBytes(ctx, "broken", bad); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	code := run(ctx, []string{"worker", "--nats", br.ClientURL(), "--model", "broken", "--cache", filepath.Join(dir, "cache"), "--device", "clitest-fake", "--metrics", ""}, &env{stdout: &errb, stderr: &errb})
	if code != 1 || !strings.Contains(errb.String(), "checksum") {
		t.Errorf("tampered artifact: exit %d: %s", code, errb.String())
	}
}

// TestWorkerCommandConsumerMismatch: a worker asking for another AckWait than
// the shared consumer's is refused, with the way out; with --update-consumer
// it changes it.
func TestWorkerCommandConsumerMismatch(t *testing.T) {
	br, js := svcTestBroker(t)
	ctx := context.Background()
	if err := broker.Provision(ctx, js); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "shared.bqa")
	svcHeaderOnlyArtifact(t, path, false)
	args := []string{"worker", "--nats", br.ClientURL(), "--artifact", path, "--device", "clitest-fake", "--metrics", ""}
	w := runSvcBG(append(args, "--ack-wait", "1m")...)
	w.waitLog(t, regexp.MustCompile(`worker serving`))
	defer w.stop(t)

	code, _, errOut := runCmd(ctx, append(args, "--ack-wait", "2s")...)
	for _, want := range []string{"ack wait is 1m0s, this worker asks 2s", "--update-consumer"} {
		if code != 1 || !strings.Contains(errOut, want) {
			t.Errorf("exit %d, want 1 and %q:\n%s", code, want, errOut)
		}
	}
	u := runSvcBG(append(args, "--ack-wait", "2s", "--update-consumer")...)
	u.waitLog(t, regexp.MustCompile(`worker serving`))
	c, err := js.Consumer(ctx, schemas.InferStream, schemas.WorkerDurable("shared"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.AckWait; got != 2*time.Second {
		t.Errorf("after --update-consumer: ack wait %s", got)
	}
	if code := u.stop(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, u.stderr.String())
	}
}
