package security_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"

	"github.com/bertq/bertq/schemas"
)

// maxLogLine bounds one log line.
const maxLogLine = 2048

// TestLogHygiene runs the whole pipeline with JSON logs into a buffer, sends
// hostile requests, and checks every line: valid JSON, bounded, no raw
// control character (C0, DEL or C1), no request text, no secret.
func TestLogHygiene(t *testing.T) {
	p := startPipeline(t)
	const (
		canary   = "CANARY-TEXT-do-not-log"
		password = "hunter2-do-not-log"
	)
	hostileID := "\x1b[31mRED\x1b[0m\n{\"level\":\"error\",\"message\":\"forged\"}\r\u009b2J\u0085" + strings.Repeat("é", 40)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	request := func(subject, reply string, body []byte) {
		t.Helper()
		if reply != "" {
			if err := p.producer.nc.PublishRequest(subject, reply, body); err != nil {
				t.Fatal(err)
			}
			return
		}
		if _, err := p.producer.nc.Request(subject, body, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", subject, err)
		}
	}
	js := func(v map[string]any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	text := "my password=" + password + " " + canary

	// Through the intake: refused by the worker (logged with the id), and
	// served (not logged at all).
	request(schemas.InferSubject(model), "", js(map[string]any{"id": hostileID, "a": text, "deadline": time.Now().Add(-time.Hour)}))
	request(schemas.InferSubject(model), "", js(map[string]any{"id": hostileID + "2", "a": text, "b": text}))
	request(schemas.InferSubject(model), "", js(map[string]any{"id": strings.Repeat("\x1b", 10_000), "a": text}))
	request(schemas.InferSubject(model), "", js(map[string]any{"a": strings.Repeat(text+" ", 15_000)}))
	request(schemas.InferSubject("no-such-"+canary), "", js(map[string]any{"a": text}))
	// Reply subjects that are not inboxes: refused, logged clipped.
	request(schemas.InferSubject(model), "evil.\u009b31m."+strings.Repeat("A", 3000), js(map[string]any{"id": hostileID + "3", "a": text}))
	// Straight into the queue: hostile Nats-Msg-Id header and reply header.
	for i, reply := range []string{"_INBOX.producer.ok", "_INBOX.\x1b[2J.\u009b"} {
		m := nats.NewMsg(schemas.WorkSubject(model))
		m.Data = js(map[string]any{"a": text, "input_ids": []int{1}})
		m.Header.Set(schemas.HeaderMsgID, fmt.Sprintf("%s-%d", hostileID, i))
		m.Header.Set(schemas.HeaderReplyTo, reply)
		if _, err := p.producer.js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// A compile job with a hostile id and name, straight into its stream:
	// identifiers may be logged, escaped and clipped; text never is.
	cm := nats.NewMsg(schemas.CompileWorkSubject)
	cm.Data = js(map[string]any{"id": hostileID, "name": "\x1b]0;pwned\a" + strings.Repeat("n", 5000), "source": "checkpoint:x", "gelu": text})
	cm.Header.Set(schemas.HeaderMsgID, "compile-hostile")
	if _, err := p.admin.js.PublishMsg(ctx, cm); err != nil {
		t.Fatal(err)
	}
	// A denied publish with a long hostile subject: the server logs the
	// violation.
	_ = p.producer.nc.Publish("evil.\x1b[31m."+strings.Repeat("B", 3000)+"."+canary, []byte(text))
	_ = p.producer.nc.Flush()
	// Logins that fail: a hostile connection name, a password.
	for _, opts := range [][]nats.Option{
		{nats.Name("\x1b[31mevil\u009b\n" + canary), nats.UserInfo("admin", password)},
		{nats.Name(strings.Repeat("N", 5000)), nats.Token(password)},
	} {
		opts = append(opts, nats.RootCAs(p.s.CA), nats.ClientCert(p.s.ClientCert, p.s.ClientKey), nats.MaxReconnects(0))
		if nc, err := nats.Connect(p.url, opts...); err == nil {
			nc.Close()
			t.Fatal("a login without a known nkey got in")
		}
	}
	// Wait until the worker and the compile worker have seen everything.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && (strings.Count(p.logs.String(), "its reply subject is not an inbox") < 2 ||
		!strings.Contains(p.logs.String(), "invalid compile job")) {
		time.Sleep(20 * time.Millisecond)
	}
	if r := p.infer(t, "after-hostile", "x", "y"); r.Error != nil {
		t.Fatal(r.Error)
	}

	logs := p.logs.String()
	secrets := []string{password, canary, "hunter2"}
	for _, role := range []string{"intake", "worker", "compiler", "producer", "admin"} {
		seed, err := os.ReadFile(p.s.Seeds[role])
		if err != nil {
			t.Fatal(err)
		}
		secrets = append(secrets, strings.TrimSpace(string(seed)))
	}
	lines := strings.Split(strings.TrimSuffix(logs, "\n"), "\n")
	for i, line := range lines {
		where := fmt.Sprintf("log line %d (%.120q)", i+1, line)
		if !json.Valid([]byte(line)) {
			t.Errorf("%s is not JSON", where)
		}
		if len(line) > maxLogLine {
			t.Errorf("%s is %d bytes long", where, len(line))
		}
		for _, r := range line {
			if r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0 {
				t.Errorf("%s holds the raw control character %U", where, r)
				break
			}
		}
		if !utf8.ValidString(line) {
			t.Errorf("%s is not valid UTF-8", where)
		}
		for _, s := range secrets {
			if strings.Contains(line, s) {
				t.Errorf("%s holds request text or a secret (%.12s…)", where, s)
			}
		}
		// A forged field must stay inside a string, never become one.
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["message"] == "forged" {
			t.Errorf("%s: a request forged a log field", where)
		}
	}
	// The test only means something if the hostile input was logged.
	for _, want := range []string{"request rejected", "its reply subject is not an inbox", "invalid compile job", "Violation", "authentication"} {
		if !strings.Contains(logs, want) {
			t.Errorf("no log line says %q: the hostile input was not exercised\n%s", want, logs)
		}
	}
	t.Logf("%d log lines checked", len(lines))
	if os.Getenv("BERTQ_SHOW_LOGS") != "" {
		t.Log(logs)
	}
}
