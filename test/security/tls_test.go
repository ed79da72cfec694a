package security_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestTLSRefusals: only clients over TLS, with a certificate of the
// deployment's CA, and a known nkey get in; and the client refuses a server
// its CA did not sign.
func TestTLSRefusals(t *testing.T) {
	e := startSecure(t)
	s := e.s
	producerKey, err := nats.NkeyOptionFromSeed(s.Seeds["producer"])
	if err != nil {
		t.Fatal(err)
	}
	strangerKey, err := nats.NkeyOptionFromSeed(s.StrangerSeed)
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(e.url)
	if err != nil {
		t.Fatal(err)
	}
	plain := "nats://" + u.Host
	tlsOK := []nats.Option{nats.RootCAs(s.CA), nats.ClientCert(s.ClientCert, s.ClientKey)}
	connect := func(url string, opts ...nats.Option) error {
		opts = append(opts, nats.MaxReconnects(0), nats.Timeout(3*time.Second))
		nc, err := nats.Connect(url, opts...)
		if err == nil {
			nc.Close()
		}
		return err
	}
	for _, tc := range []struct {
		name string
		err  func(error) bool
		do   func() error
	}{
		{"mutual TLS and the producer's nkey: in", func(err error) bool { return err == nil }, func() error {
			nc, err := nats.Connect(e.url, append(tlsOK, producerKey, nats.CustomInboxPrefix("_INBOX.producer"))...)
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := nc.TLSConnectionState()
			if err != nil || !st.HandshakeComplete || st.Version < tls.VersionTLS12 || len(st.PeerCertificates) == 0 {
				return errors.New("no TLS 1.2+ session")
			}
			return nil
		}},
		{"client without TLS settings (nats.go must upgrade, and cannot verify the server)", func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "tls")
		}, func() error { return connect(plain, producerKey) }},
		{"plaintext CONNECT on the wire: the server answers no PONG", func(err error) bool { return err != nil }, func() error {
			return rawPlaintext(u.Host)
		}},
		{"TLS without a client certificate", func(err error) bool { return err != nil }, func() error {
			return connect(e.url, nats.RootCAs(s.CA), producerKey)
		}},
		{"client certificate from another CA", func(err error) bool { return err != nil }, func() error {
			return connect(e.url, nats.RootCAs(s.CA), nats.ClientCert(s.RogueCert, s.RogueKey), producerKey)
		}},
		{"client that trusts another CA refuses the server", func(err error) bool {
			return err != nil && strings.Contains(err.Error(), "certificate")
		}, func() error {
			return connect(e.url, nats.RootCAs(s.RogueCA), nats.ClientCert(s.ClientCert, s.ClientKey), producerKey)
		}},
		{"mutual TLS without credentials", func(err error) bool { return errors.Is(err, nats.ErrAuthorization) }, func() error {
			return connect(e.url, tlsOK...)
		}},
		{"mutual TLS with an nkey the server does not know", func(err error) bool { return errors.Is(err, nats.ErrAuthorization) }, func() error {
			return connect(e.url, append(tlsOK, strangerKey)...)
		}},
		{"mutual TLS with a user and password (none are configured)", func(err error) bool { return errors.Is(err, nats.ErrAuthorization) }, func() error {
			return connect(e.url, append(tlsOK, nats.UserInfo("admin", "hunter2-tls-password"))...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !tc.err(err) {
				t.Fatalf("unexpected result: %v", err)
			}
		})
	}
	if strings.Contains(e.logs.String(), "hunter2") {
		t.Fatal("the server logged a password")
	}
}

// rawPlaintext speaks the NATS protocol without TLS to a server that
// requires it, and reports an error unless the server answers PONG.
func rawPlaintext(addr string) error {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	r := bufio.NewReader(c)
	info, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.Contains(info, `"tls_required":true`) {
		return nil // would be a plaintext server: the caller fails
	}
	if _, err := c.Write([]byte("CONNECT {\"verbose\":false}\r\nPING\r\n")); err != nil {
		return err
	}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return err // closed: refused
		}
		if strings.HasPrefix(line, "PONG") {
			return nil
		}
		if strings.HasPrefix(line, "-ERR") {
			return errors.New(strings.TrimSpace(line))
		}
	}
}

// TestInboxPrefixRequired: a client that forgets its role's inbox prefix is
// refused its reply subscription, so it cannot wait for answers anywhere
// else (deploy/SECURITY.md, "Running it").
func TestInboxPrefixRequired(t *testing.T) {
	e := startSecure(t)
	c := &client{role: "producer"}
	nk, err := nats.NkeyOptionFromSeed(e.s.Seeds["producer"])
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(e.url, nk, nats.RootCAs(e.s.CA), nats.ClientCert(e.s.ClientCert, e.s.ClientKey), nats.ErrorHandler(c.onError))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Request("bert.infer.tiny", []byte(`{"a":"x"}`), 300*time.Millisecond); err == nil {
		t.Fatal("a request without the inbox prefix got an answer")
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		found := false
		for _, v := range c.violations() {
			found = found || strings.Contains(v, `Subscription to "_INBOX.`)
		}
		if found {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no subscription violation: %v", c.violations())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
