package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/internal/natstest"
	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
)

// testBroker runs an embedded, provisioned server on a random loopback port.
func testBroker(t *testing.T) (*broker.Broker, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	e := natstest.Provisioned(t)
	return e.Broker, e.NC, e.JS
}

// runCmd runs one bertq command line in-process.
func runCmd(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(ctx, args, &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb})
	return code, out.String(), errb.String()
}

// lastJSON decodes the last stdout line.
func lastJSON(t *testing.T, stdout string, v any) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(stdout, "\n"), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), v); err != nil {
		t.Fatalf("last stdout line is not JSON: %v\n%s", err, stdout)
	}
}

// answer replies correctly-shaped answers (label 1, synthetic) to m.
func answer(nc *nats.Conn, replyTo string, m *nats.Msg) {
	var req schemas.InferRequest
	enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
	if schemas.Unmarshal(enc, m.Data, &req) != nil {
		return
	}
	data, _ := schemas.Marshal(enc, &schemas.InferReply{V: 1, ID: req.ID, LabelIndex: 1, BatchSize: 4, Synthetic: true})
	out := &nats.Msg{Subject: replyTo, Header: nats.Header{}, Data: data}
	out.Header.Set(schemas.HeaderContentType, enc.ContentType())
	nc.PublishMsg(out)
}

func TestProducerCommand(t *testing.T) {
	b, nc, _ := testBroker(t)
	sub, err := nc.Subscribe(schemas.InferSubject("mrpc"), func(m *nats.Msg) { answer(nc, m.Reply, m) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	code, out, errOut := runCmd(context.Background(), "producer", "--nats", b.ClientURL(), "--model", "mrpc",
		"--clients", "3", "--cycle", "4", "--msgpack", "--json", "--timeout", "5s")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var s struct {
		Sent, Answered, Errors, Lost, Duplicates int
		Throughput                               float64            `json:"throughput_per_s"`
		Latency                                  map[string]float64 `json:"latency_ms"`
		Accuracy                                 *float64
		Synthetic                                bool
		BatchSizes                               map[string]int `json:"batch_sizes"`
		ErrorCodes                               map[string]int `json:"error_codes"`
	}
	lastJSON(t, out, &s)
	if s.Sent != 12 || s.Answered != 12 || s.Errors != 0 || s.Lost != 0 || s.Throughput <= 0 || s.Accuracy == nil || !s.Synthetic || s.BatchSizes["4"] != 12 || s.ErrorCodes == nil {
		t.Fatalf("summary %+v\n%s", s, out)
	}
	for _, k := range []string{"p50", "p90", "p95", "p99"} {
		if _, ok := s.Latency[k]; !ok {
			t.Fatalf("latency_ms lacks %s: %v", k, s.Latency)
		}
	}
	if !strings.Contains(out, "accuracy above, are meaningless") {
		t.Errorf("no synthetic warning:\n%s", out)
	}
}

func TestProducerCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"producer"},
		{"producer", "--model", "m", "--wait"},
		{"producer", "--collect", "abcdefghij-3", "--backlog", "3"},
		{"producer", "--model", "m", "extra"},
	} {
		if code, _, _ := runCmd(context.Background(), args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCmd(context.Background(), "producer", "--collect", "nope"); code != 1 || !strings.Contains(errOut, "not a backlog run id") {
		t.Errorf("bad run id: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runCmd(context.Background(), "producer", "--model", "m", "--data", "/nonexistent/dev.tsv"); code != 1 || !strings.Contains(errOut, "/nonexistent/dev.tsv") {
		t.Errorf("bad data file: exit %d: %s", code, errOut)
	}
}

// TestProducerBacklogCommand: --backlog publishes and exits; --collect,
// started before the worker, gathers every reply.
func TestProducerBacklogCommand(t *testing.T) {
	b, nc, js := testBroker(t)
	code, out, errOut := runCmd(context.Background(), "producer", "--nats", b.ClientURL(), "--model", "mrpc", "--backlog", "6", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r producer.BacklogReceipt
	lastJSON(t, out, &r)
	if r.Published != 6 || r.RunID == "" || !strings.Contains(out, "--collect "+r.RunID) {
		t.Fatalf("receipt %+v\n%s", r, out)
	}

	var wg sync.WaitGroup
	var cOut, cErr string
	wg.Add(1)
	go func() {
		defer wg.Done()
		code, cOut, cErr = runCmd(context.Background(), "producer", "--nats", b.ClientURL(), "--collect", r.RunID, "--timeout", "20s", "--json", "--quiet")
	}()
	// Start the worker once the collector listens.
	for b.Server().GlobalAccount().Interest(r.Inbox) == 0 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, schemas.InferStream, jetstream.ConsumerConfig{
		Durable: schemas.WorkerDurable("mrpc"), FilterSubject: schemas.WorkSubject("mrpc"), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		answer(nc, m.Headers().Get(schemas.HeaderReplyTo), &nats.Msg{Header: m.Headers(), Data: m.Data()})
		m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	wg.Wait()
	if code != 0 {
		t.Fatalf("collect exit %d: %s", code, cErr)
	}
	var s producer.Summary
	lastJSON(t, cOut, &s)
	if s.Sent != 6 || s.Answered != 6 || s.Lost != 0 || s.Mode != "collect" {
		t.Fatalf("summary %+v", s)
	}
}

// TestProducerReport: --report writes the page beside the usual output.
func TestProducerReport(t *testing.T) {
	b, nc, _ := testBroker(t)
	sub, err := nc.Subscribe(schemas.InferSubject("mrpc"), func(m *nats.Msg) { answer(nc, m.Reply, m) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	page := filepath.Join(t.TempDir(), "run.html")
	code, out, errOut := runCmd(context.Background(), "producer", "--nats", b.ClientURL(), "--model", "mrpc",
		"--clients", "2", "--cycle", "5", "--json", "--quiet", "--report", page)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var s producer.Summary
	lastJSON(t, out, &s)
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`data-key="run_id">` + s.RunID + `<`, `data-key="answered">10<`, `data-chart="throughput" data-total="10"`} {
		if !strings.Contains(string(html), want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	if code, _, _ := runCmd(context.Background(), "producer", "--model", "m", "--backlog", "3", "--report", page); code != 2 {
		t.Errorf("--report without replies: exit %d, want 2", code)
	}
	if code, _, errOut := runCmd(context.Background(), "producer", "--nats", b.ClientURL(), "--model", "mrpc", "--clients", "1", "--cycle", "1",
		"--quiet", "--report", filepath.Join(t.TempDir(), "no", "such", "dir.html")); code != 1 || !strings.Contains(errOut, "--report") {
		t.Errorf("unwritable report: exit %d: %s", code, errOut)
	}
}
