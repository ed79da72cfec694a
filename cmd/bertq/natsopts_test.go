package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/bertq/bertq/internal/testbuf"
	"github.com/bertq/bertq/schemas"
	"github.com/bertq/bertq/test/security/securetest"
)

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                      "nats://127.0.0.1:4222",
		"nats://bob:s3cret@127.0.0.1:4222":           "nats://bob:xxxxx@127.0.0.1:4222",
		"tls://s3cret-token@host:4222":               "tls://xxxxx@host:4222",
		"nats://a:s3cret@h1:1, nats://b:s3cret@h2:2": "nats://a:xxxxx@h1:1,nats://b:xxxxx@h2:2",
		"nats://a:%zz-s3cret@h:1":                    "[redacted]@h:1",
		"127.0.0.1:4222":                             "127.0.0.1:4222",
		"nats://user:pa%40ss-s3cret@[::1]:4222/?x=1": "nats://user:xxxxx@[::1]:4222/?x=1",
	} {
		got := redactURL(in)
		if got != want || strings.Contains(got, "s3cret") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNATSFlagsOptions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"--user", "u", "--password", "p"}, true},
		{[]string{"--user", "u"}, true},
		{[]string{"--password", "p"}, false},
		{[]string{"--user", "u", "--nkey", "x"}, false},
		{[]string{"--creds", "/nonexistent", "--nkey", "x"}, false},
		{[]string{"--creds", "/nonexistent"}, false},
		{[]string{"--nkey", "/nonexistent"}, false},
		{[]string{"--tls-cert", "c.pem"}, false},
		{[]string{"--tls-key", "k.pem"}, false},
		{[]string{"--inbox-prefix", "_INBOX.producer"}, true},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		nf := addNATSFlags(fs, "")
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		_, err := nf.options()
		if (err == nil) != tc.ok {
			t.Errorf("%v: %v", tc.args, err)
		}
	}
}

// startAuthServer runs a plain nats-server on port that wants user bertq
// with password pass.
func startAuthServer(t *testing.T, port int, pass string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, Username: "bertq", Password: pass, NoSigs: true, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return s
}

// TestDialNATSNeverShowsPassword: a password in the URL or a flag appears
// neither in errors nor in log lines, also across a reconnect.
func TestDialNATSNeverShowsPassword(t *testing.T) {
	const secret = "s3cret-pw-31337"
	srv := startAuthServer(t, -1, secret)
	addr := srv.ClientURL()[len("nats://"):]
	logs := &testbuf.Buffer{}
	log := zerolog.New(logs)

	// A wrong password in the URL: the error names the server, not the password.
	_, err := dialNATS(&natsFlags{url: "nats://bertq:wrong-" + secret + "@" + addr}, "t", log, false)
	if err == nil || !strings.Contains(err.Error(), "xxxxx@"+addr) || strings.Contains(err.Error(), secret) {
		t.Fatalf("error %v", err)
	}
	// A wrong password by flag.
	_, err = dialNATS(&natsFlags{url: "nats://" + addr, user: "bertq", password: "wrong-" + secret}, "t", log, false)
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("error %v", err)
	}
	// The right password in the URL, through a server restart.
	nc, err := dialNATS(&natsFlags{url: "nats://bertq:" + secret + "@" + addr}, "t", log, true)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_, portStr, _ := strings.Cut(addr, ":")
	var portNum int
	fmt.Sscan(portStr, &portNum)
	srv.Shutdown()
	srv.WaitForShutdown()
	srv = startAuthServer(t, portNum, secret)
	defer srv.Shutdown()
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(logs.String(), "NATS reconnected") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "NATS reconnected") {
		t.Fatalf("no reconnect logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), secret) {
		t.Fatalf("a log line holds the password:\n%s", logs.String())
	}
}

// TestBrokerCommandSecureConfig: `bertq broker --config` loads the shipped
// deny-by-default configuration, logs its own connection in with the
// intake's nkey, and clients of other commands get in only with their
// credentials over mutual TLS.
func TestBrokerCommandSecureConfig(t *testing.T) {
	s := securetest.New(t)
	store := t.TempDir()

	// Without credentials for its own connection, the broker cannot serve:
	// in process is no way around the configuration. (The refusal takes
	// nats-server's 10 s write deadline on the in-process pipe.)
	refused := &testbuf.Buffer{}
	if code := run(context.Background(), []string{"broker", "--config", s.Config, "--listen", "127.0.0.1:-1", "--store", t.TempDir(), "--log-json"},
		&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: refused}); code != 1 {
		t.Fatalf("broker without --nkey exited %d, want 1", code)
	}
	if !strings.Contains(refused.String(), "--nkey") {
		t.Fatalf("the refusal does not say what to do:\n%s", refused.String())
	}

	b := runSvcBG("broker", "--config", s.Config, "--listen", "127.0.0.1:-1", "--store", store, "--log-json",
		"--nkey", s.Seeds["intake"], "--inbox-prefix", "_INBOX.intake")
	defer b.stop(t)
	url := b.waitLog(t, regexp.MustCompile(`"url":"(tls://127\.0\.0\.1:\d+)"[^\n]*broker ready`))[1]
	tlsFlags := []string{"--nats", url, "--tls-ca", s.CA, "--tls-cert", s.ClientCert, "--tls-key", s.ClientKey}

	// The operator provisions over mutual TLS with its nkey.
	out := &testbuf.Buffer{}
	args := append([]string{"provision"}, tlsFlags...)
	args = append(args, "--nkey", s.Seeds["admin"], "--inbox-prefix", "_INBOX.admin", "--log-json")
	if code := run(context.Background(), args, &env{stdin: strings.NewReader(""), stdout: out, stderr: out}); code != 0 {
		t.Fatalf("provision exited %d:\n%s", code, out.String())
	}
	// Without TLS settings a command cannot connect, and says why.
	out = &testbuf.Buffer{}
	if code := run(context.Background(), []string{"provision", "--nats", url, "--nkey", s.Seeds["admin"]},
		&env{stdin: strings.NewReader(""), stdout: out, stderr: out}); code != 1 || !strings.Contains(out.String(), "tls") {
		t.Fatalf("provision without TLS flags exited %d:\n%s", code, out.String())
	}
	// A producer's request reaches the intake, which answers within its
	// permissions (the model bucket lookup).
	nk, err := nats.NkeyOptionFromSeed(s.Seeds["producer"])
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(url, nk, nats.RootCAs(s.CA), nats.ClientCert(s.ClientCert, s.ClientKey), nats.CustomInboxPrefix("_INBOX.producer"),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	resp, err := nc.Request(schemas.InferSubject("none"), []byte(`{"id":"x","a":"y"}`), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get(schemas.HeaderErrorCode) != schemas.CodeUnknownModel {
		t.Fatalf("intake reply %s %v", resp.Data, resp.Header)
	}
	// The producer role may not provision.
	_, err = nc.Request("$JS.API.STREAM.DELETE."+schemas.InferStream, nil, 500*time.Millisecond)
	if !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, nats.ErrNoResponders) && !errors.Is(err, nats.ErrPermissionViolation) {
		t.Fatalf("stream delete as producer: %v", err)
	}
}
