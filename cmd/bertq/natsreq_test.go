package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/schemas"
)

// natsCLI finds the real nats CLI (v0.5.0, installed by `task setup`); the
// test fails loudly without it rather than passing untested.
func natsCLI(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nats"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "nats")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("the nats CLI is required: install it with `go install github.com/nats-io/natscli/nats@v0.5.0` (go tool task setup does)")
	return ""
}

// TestNatsReqMatchesPredict is the README's promise: any NATS client, here the
// stock `nats req`, gets the same label and probabilities as `bertq predict`.
func TestNatsReqMatchesPredict(t *testing.T) {
	cli := natsCLI(t)
	if out, err := exec.Command(cli, "--version").CombinedOutput(); err != nil || !strings.Contains(string(out), "v0.5.0") {
		t.Fatalf("nats CLI %s: want v0.5.0, got %q (%v)", cli, out, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dir := t.TempDir()
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
	obs, err := js.ObjectStore(ctx, schemas.ModelBucket)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(art)
	if err != nil {
		t.Fatal(err)
	}
	_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: "tiny"}, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	w := runSvcBG("worker", "--nats", url, "--model", "tiny", "--parallel", "2", "--device", "go", "--cache", filepath.Join(dir, "cache"), "--metrics", "")
	defer w.stop(t)
	w.waitLog(t, regexp.MustCompile(`worker serving`))

	pairs := fixtures.Pairs(t).Pairs
	picks := []int{0, 5, 23, 34} // ordinary, ordinary, empty a, truncated
	var stdin bytes.Buffer
	for _, i := range picks {
		line, _ := json.Marshal(map[string]string{"a": pairs[i].A, "b": pairs[i].B})
		stdin.Write(append(line, '\n'))
	}
	var pout, perr bytes.Buffer
	if code := run(ctx, []string{"predict", "--artifact", art, "--device", "go"}, &env{stdin: &stdin, stdout: &pout, stderr: &perr}); code != 0 {
		t.Fatalf("predict: %d\n%s", code, perr.String())
	}
	preds := strings.Split(strings.TrimSpace(pout.String()), "\n")
	if len(preds) != len(picks) {
		t.Fatalf("predict wrote %d lines for %d pairs", len(preds), len(picks))
	}
	home := t.TempDir() // keep the CLI away from any user's saved contexts
	for k, i := range picks {
		body, _ := json.Marshal(map[string]string{"id": "natsreq-" + string(rune('a'+k)), "a": pairs[i].A, "b": pairs[i].B})
		cmd := exec.CommandContext(ctx, cli, "--server", url, "--timeout", "30s", "req", "--raw", schemas.InferSubject("tiny"), string(body))
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("nats req: %v\n%s", err, out)
		}
		var got schemas.InferReply
		if err := json.Unmarshal(bytes.TrimSpace(out), &got); err != nil {
			t.Fatalf("nats req printed no JSON reply: %v\n%s", err, out)
		}
		var want prediction
		if err := json.Unmarshal([]byte(preds[k]), &want); err != nil {
			t.Fatal(err)
		}
		if got.Error != nil || got.Label != want.Label || got.LabelIndex != want.LabelIndex || len(got.Probabilities) != len(want.Probabilities) {
			t.Fatalf("pair %d: nats req %s, predict %s", i, out, preds[k])
		}
		for l := range want.Probabilities {
			if math.Abs(float64(got.Probabilities[l]-want.Probabilities[l])) > 1e-6 {
				t.Errorf("pair %d: probability %d: nats req %v, predict %v", i, l, got.Probabilities, want.Probabilities)
			}
		}
		t.Logf("pair %d: label %s, probabilities %v (batch of %d)", i, got.Label, got.Probabilities, got.BatchSize)
	}
}
