package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/internal/testbuf"
	"github.com/bertq/bertq/schemas"
)

// nodeTools finds node (20 or newer) and npm; the test fails, saying so,
// where they are missing rather than passing untested.
func nodeTools(t *testing.T) (node, npm string) {
	t.Helper()
	var err error
	if node, err = exec.LookPath("node"); err != nil {
		t.Fatal("node is required for the Node.js client test and is not on PATH (Debian: apt-get install nodejs npm)")
	}
	if npm, err = exec.LookPath("npm"); err != nil {
		t.Fatal("npm is required for the Node.js client test and is not on PATH (Debian: apt-get install npm)")
	}
	out, err := exec.Command(node, "--version").Output()
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	major, _ := strconv.Atoi(strings.Split(v, ".")[0])
	if err != nil || major < 20 {
		t.Fatalf("node %q (%v): version 20 or newer is required", v, err)
	}
	return node, npm
}

// nodeStep is one line of examples/node/demo.mjs's output.
type nodeStep struct {
	Step    string               `json:"step"`
	Count   int                  `json:"count"`
	Acks    []jetstream.PubAck   `json:"acks"`
	Replies []schemas.InferReply `json:"replies"`
}

// TestNodeClient runs examples/node (the official NATS client for Node.js,
// @nats-io/transport-node and @nats-io/jetstream, with @msgpack/msgpack, as
// pinned by its package-lock.json, installed with `npm ci`) against the
// real stack: a backlog queued while no worker runs and collected once one
// does, JSON and msgpack request/reply through the intake, and a
// JetStream-direct publish with the reply header and a checked PubAck. Every
// answer must equal `bertq predict` on the same pairs.
func TestNodeClient(t *testing.T) {
	node, npm := nodeTools(t)
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	dir := t.TempDir()
	app := filepath.Join(dir, "app")
	if err := os.Mkdir(app, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"package.json", "package-lock.json", "bertq.mjs", "demo.mjs"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "examples", "node", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(app, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ci := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	ci.Dir = app
	if out, err := ci.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", app, err, out)
	}

	art := filepath.Join(dir, "tiny.bqa")
	if code, out, errs := runCmd(ctx, "compile", "--input", fixtures.ModelDir(t, "tiny-fp32"), "--output", art, "--precision", "fp32", "--device", "go"); code != 0 {
		t.Fatalf("compile: %d\n%s%s", code, out, errs)
	}
	b := runSvcBG("broker", "--listen", "127.0.0.1:-1", "--store", filepath.Join(dir, "store"), "--log-json")
	defer b.stop(t)
	url := b.waitLog(t, regexp.MustCompile(`"url":"(nats://127\.0\.0\.1:\d+)"[^\n]*broker ready`))[1]
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	uploadArtifact(ctx, t, js, "tiny", art)

	golden := fixtures.Pairs(t).Pairs
	picks := []int{0, 5, 23, 34} // ordinary, ordinary, empty a, truncated
	var pairs []map[string]string
	var stdin bytes.Buffer
	for _, i := range picks {
		p := map[string]string{"a": golden[i].A, "b": golden[i].B}
		pairs = append(pairs, p)
		line, _ := json.Marshal(p)
		stdin.Write(append(line, '\n'))
	}
	want := predictions(ctx, t, art, &stdin, len(picks))
	pairsFile := filepath.Join(dir, "pairs.json")
	pj, _ := json.Marshal(pairs)
	if err := os.WriteFile(pairsFile, pj, 0o644); err != nil {
		t.Fatal(err)
	}

	cmd := exec.CommandContext(ctx, node, "demo.mjs", "--server", url, "--model", "tiny", "--pairs", pairsFile, "--backlog", "--timeout", "60000")
	cmd.Dir = app
	stderr := &testbuf.Buffer{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	steps := map[string]nodeStep{}
	var w *svcBG
	defer func() {
		if w != nil {
			w.stop(t)
		}
	}()
	for line := range lines {
		var s nodeStep
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			t.Fatalf("demo.mjs printed %q: %v", line, err)
		}
		steps[s.Step] = s
		if s.Step != "backlog-published" {
			continue
		}
		// The backlog waits in the stream: no worker has run yet.
		st, err := js.Stream(ctx, schemas.InferStream)
		if err != nil {
			t.Fatal(err)
		}
		if n := st.CachedInfo().State.Msgs; n != uint64(len(picks)) {
			t.Errorf("the stream holds %d requests after the backlog, want %d", n, len(picks))
		}
		w = runSvcBG("worker", "--nats", url, "--model", "tiny", "--parallel", "2", "--device", "go", "--cache", filepath.Join(dir, "cache"), "--metrics", "")
		w.waitLog(t, regexp.MustCompile(`worker serving`))
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node demo.mjs: %v\n%s", err, stderr.String())
	}
	if w == nil {
		t.Fatalf("demo.mjs never said its backlog was published; stderr:\n%s", stderr.String())
	}
	pub := steps["backlog-published"]
	if pub.Count != len(picks) || len(pub.Acks) != len(picks) {
		t.Errorf("backlog: %+v", pub)
	}
	for _, name := range []string{"backlog", "json", "msgpack", "direct"} {
		s, ok := steps[name]
		if !ok {
			t.Errorf("demo.mjs printed no %q step", name)
			continue
		}
		if len(s.Replies) != len(picks) {
			t.Errorf("%s: %d replies for %d pairs", name, len(s.Replies), len(picks))
			continue
		}
		for k, got := range s.Replies {
			wantID := fmt.Sprintf("-%s-%d", name, k)
			if got.Error != nil || !strings.HasSuffix(got.ID, wantID) {
				t.Errorf("%s pair %d: reply %+v", name, picks[k], got)
				continue
			}
			compareReply(t, name, picks[k], got, want[k])
		}
		t.Logf("%s: %d answers, e.g. pair %d: %s %v", name, len(s.Replies), picks[0], s.Replies[0].Label, s.Replies[0].Probabilities)
	}
	for i, ack := range append(pub.Acks, steps["direct"].Acks...) {
		if ack.Stream != schemas.InferStream || ack.Duplicate || ack.Sequence == 0 {
			t.Errorf("PubAck %d: %+v", i, ack)
		}
	}
}

// predictions runs `bertq predict` on the JSON lines of in.
func predictions(ctx context.Context, t *testing.T, art string, in *bytes.Buffer, n int) []prediction {
	t.Helper()
	var out, errs bytes.Buffer
	if code := run(ctx, []string{"predict", "--artifact", art, "--device", "go"}, &env{stdin: in, stdout: &out, stderr: &errs}); code != 0 {
		t.Fatalf("predict: %d\n%s", code, errs.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != n {
		t.Fatalf("predict wrote %d lines for %d pairs", len(lines), n)
	}
	preds := make([]prediction, n)
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &preds[i]); err != nil {
			t.Fatal(err)
		}
	}
	return preds
}

// compareReply checks a served answer against `bertq predict`'s.
func compareReply(t *testing.T, step string, pair int, got schemas.InferReply, want prediction) {
	t.Helper()
	if got.Label != want.Label || got.LabelIndex != want.LabelIndex || len(got.Probabilities) != len(want.Probabilities) {
		t.Errorf("%s pair %d: label %q (%d) %v, predict %q (%d) %v", step, pair, got.Label, got.LabelIndex, got.Probabilities, want.Label, want.LabelIndex, want.Probabilities)
		return
	}
	for l := range want.Probabilities {
		if math.Abs(float64(got.Probabilities[l]-want.Probabilities[l])) > 1e-5 {
			t.Errorf("%s pair %d: probabilities %v, predict %v", step, pair, got.Probabilities, want.Probabilities)
			return
		}
	}
}

// uploadArtifact stores the artifact at path as model name in the bucket.
func uploadArtifact(ctx context.Context, t *testing.T, js jetstream.JetStream, name, path string) {
	t.Helper()
	obs, err := js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := obs.Put(ctx, jetstream.ObjectMeta{Name: name}, f); err != nil {
		t.Fatal(err)
	}
}
