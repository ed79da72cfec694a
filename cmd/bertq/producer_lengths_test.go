package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/internal/fixtures"
	"github.com/bertq/bertq/producer"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/tokenizer"
)

// TestProducerLengths: --lengths sends text whose WordPiece lengths are the
// file's, pair for pair in the order the clients take them.
func TestProducerLengths(t *testing.T) {
	path := fixtures.Path(t, "mrpc-dev-lengths.json")
	ls, err := producer.LoadLengths(path)
	if err != nil {
		t.Fatal(err)
	}
	b, nc, _ := testBroker(t)
	tok := tokenizer.Default()
	var mu sync.Mutex
	got := map[string]producer.Lengths{} // by request id
	sub, err := nc.Subscribe(schemas.InferSubject("mrpc"), func(m *nats.Msg) {
		var req schemas.InferRequest
		if schemas.Unmarshal(schemas.JSON, m.Data, &req) == nil {
			mu.Lock()
			got[req.ID] = producer.Lengths{A: len(tok.Encode(req.A)), B: len(tok.Encode(req.B))}
			mu.Unlock()
		}
		answer(nc, m.Reply, m)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	const clients, cycle = 4, 5
	code, out, errOut := runCmd(context.Background(), "producer", "--nats", b.ClientURL(), "--model", "mrpc",
		"--lengths", path, "--clients", fmt.Sprint(clients), "--cycle", fmt.Sprint(cycle), "--json", "--timeout", "5s", "--quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var s struct{ Sent, Answered int }
	lastJSON(t, out, &s)
	mu.Lock()
	defer mu.Unlock()
	if s.Sent != clients*cycle || s.Answered != s.Sent || len(got) != s.Sent {
		t.Fatalf("sent %d, answered %d, %d requests seen\n%s", s.Sent, s.Answered, len(got), errOut)
	}
	for id, l := range got {
		// Request ids end in -<client>-<seq>; client c's seq-th request
		// carries pair seq × clients + c.
		f := strings.Split(id, "-")
		var c, seq int
		fmt.Sscan(f[len(f)-2], &c)
		fmt.Sscan(f[len(f)-1], &seq)
		if want := ls[(seq*clients+c)%len(ls)]; l != want {
			t.Errorf("%s: %d and %d tokens, want %d and %d", id, l.A, l.B, want.A, want.B)
		}
	}
	for _, args := range [][]string{
		{"producer", "--model", "m", "--lengths", path, "--data", "x.tsv"},
	} {
		if code, _, _ := runCmd(context.Background(), args...); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
	}
	if code, _, errOut := runCmd(context.Background(), "producer", "--model", "m", "--lengths", "/nonexistent/l.json"); code != 1 || !strings.Contains(errOut, "/nonexistent/l.json") {
		t.Errorf("bad lengths file: exit %d: %s", code, errOut)
	}
}
