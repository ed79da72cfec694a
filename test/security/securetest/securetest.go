// Package securetest builds, at run time and for tests only, everything the
// shipped deploy/secure/bertq.conf needs: a CA, a server certificate for
// 127.0.0.1, client certificates, one user nkey per role, and site.conf.
// The policy file itself is copied unchanged, so tests enforce what ships.
package securetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Roles of deploy/secure/bertq.conf; each subscribes below _INBOX.<role>.
var Roles = []string{"intake", "worker", "compiler", "producer", "admin"}

// Setup is a directory holding a copy of deploy/secure/bertq.conf, its
// site.conf, and the certificates and seeds the test clients use.
type Setup struct {
	Dir    string
	Config string // bertq.conf

	CA, ServerCert, ServerKey string
	ClientCert, ClientKey     string // signed by CA
	RogueCA                   string // another CA
	RogueCert, RogueKey       string // a client certificate signed by RogueCA

	Seeds  map[string]string // role → seed file
	Public map[string]string // role → public nkey
	// StrangerSeed is a user nkey the configuration does not know.
	StrangerSeed string
}

// RepoFile finds path (relative to the repository root) by walking up from
// the working directory.
func RepoFile(t testing.TB, path string) string {
	t.Helper()
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		p := filepath.Join(d, path)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if filepath.Dir(d) == d {
			t.Fatalf("%s not found in %s or any parent", path, wd)
		}
	}
}

// New writes a fresh Setup into a temporary directory.
func New(t testing.TB) *Setup {
	t.Helper()
	dir := t.TempDir()
	s := &Setup{Dir: dir, Config: filepath.Join(dir, "bertq.conf"), Seeds: map[string]string{}, Public: map[string]string{}}
	policy, err := os.ReadFile(RepoFile(t, "deploy/secure/bertq.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.Config, policy, 0o600); err != nil {
		t.Fatal(err)
	}

	ca, caKey := newCA(t, "bertq test CA")
	s.CA = writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.Raw)
	s.ServerCert, s.ServerKey = issue(t, dir, "server", ca, caKey, x509.ExtKeyUsageServerAuth)
	s.ClientCert, s.ClientKey = issue(t, dir, "client", ca, caKey, x509.ExtKeyUsageClientAuth)
	rogue, rogueKey := newCA(t, "rogue CA")
	s.RogueCA = writePEM(t, dir, "rogue-ca.pem", "CERTIFICATE", rogue.Raw)
	s.RogueCert, s.RogueKey = issue(t, dir, "rogue-client", rogue, rogueKey, x509.ExtKeyUsageClientAuth)

	var site strings.Builder
	for _, role := range append(append([]string(nil), Roles...), "stranger") {
		kp, err := nkeys.CreateUser()
		if err != nil {
			t.Fatal(err)
		}
		seed, err := kp.Seed()
		if err != nil {
			t.Fatal(err)
		}
		pub, err := kp.PublicKey()
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(dir, role+".nk")
		if err := os.WriteFile(file, seed, 0o600); err != nil {
			t.Fatal(err)
		}
		if role == "stranger" {
			s.StrangerSeed = file
			continue
		}
		s.Seeds[role], s.Public[role] = file, pub
		fmt.Fprintf(&site, "BERTQ_%s_NKEY: %q\n", strings.ToUpper(role), pub)
	}
	// The broker's WithListen and WithStoreDir override these two.
	fmt.Fprintf(&site, "BERTQ_LISTEN: \"127.0.0.1:4222\"\nBERTQ_STORE_DIR: %q\n", filepath.Join(dir, "store"))
	fmt.Fprintf(&site, "BERTQ_TLS_CERT: %q\nBERTQ_TLS_KEY: %q\nBERTQ_TLS_CA: %q\n", s.ServerCert, s.ServerKey, s.CA)
	if err := os.WriteFile(filepath.Join(dir, "site.conf"), []byte(site.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// ClientOptions are what a client of role needs: its nkey, mutual TLS, and
// its inbox prefix _INBOX.<role>.
func (s *Setup) ClientOptions(t testing.TB, role string) []nats.Option {
	t.Helper()
	nk, err := nats.NkeyOptionFromSeed(s.Seeds[role])
	if err != nil {
		t.Fatal(err)
	}
	return []nats.Option{
		nk, nats.RootCAs(s.CA), nats.ClientCert(s.ClientCert, s.ClientKey),
		nats.CustomInboxPrefix("_INBOX." + role), nats.Name("bertq-test-" + role),
	}
}

func newCA(t testing.TB, name string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// issue writes a certificate for 127.0.0.1 and localhost signed by ca, and
// its key; it returns their paths.
func issue(t testing.TB, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, usage x509.ExtKeyUsage) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return writePEM(t, dir, name+"-cert.pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "PRIVATE KEY", kder)
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
