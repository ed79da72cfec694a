package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// passwordEnv supplies --password when the flag is not given, so that the
// password need not appear in the process list.
const passwordEnv = "BERTQ_NATS_PASSWORD"

// natsFlags are the connection flags every command that talks to NATS shares:
// where, who (one of --creds, --nkey, --user), over TLS, and the inbox prefix
// the user may subscribe to (deploy/SECURITY.md).
type natsFlags struct {
	url         string
	creds       string
	nkey        string
	user        string
	password    string
	tlsCA       string
	tlsCert     string
	tlsKey      string
	inboxPrefix string
}

// addNATSFlags declares --nats and the credential and TLS flags on fs. when
// prefixes their help (e.g. "with --submit: ").
func addNATSFlags(fs *flag.FlagSet, when string) *natsFlags {
	f := &natsFlags{}
	fs.StringVar(&f.url, "nats", defaultNATS, when+"NATS server URL (a password in it is never logged)")
	f.addAuth(fs, when)
	fs.StringVar(&f.tlsCA, "tls-ca", "", when+"CA certificate file (PEM) that signs the server's certificate; implies TLS")
	fs.StringVar(&f.tlsCert, "tls-cert", "", when+"client certificate file (PEM) for mutual TLS (with --tls-key)")
	fs.StringVar(&f.tlsKey, "tls-key", "", when+"client private key file (PEM) for mutual TLS (with --tls-cert)")
	return f
}

// addAuth declares the credential flags and --inbox-prefix only (the broker's
// own in-process connection needs no URL or TLS).
func (f *natsFlags) addAuth(fs *flag.FlagSet, when string) {
	fs.StringVar(&f.creds, "creds", "", when+"NATS user credentials file (JWT and seed, operator mode)")
	fs.StringVar(&f.nkey, "nkey", "", when+"file holding the user's nkey seed (SU...)")
	fs.StringVar(&f.user, "user", "", when+"NATS user name (password from --password or $"+passwordEnv+")")
	fs.StringVar(&f.password, "password", "", when+"NATS password (prefer $"+passwordEnv+": flags show in the process list)")
	fs.StringVar(&f.inboxPrefix, "inbox-prefix", "", when+"reply inbox prefix, e.g. _INBOX.producer for a user allowed to subscribe to _INBOX.producer.> only (default _INBOX)")
}

// options turns the flags into nats.go options.
func (f *natsFlags) options() ([]nats.Option, error) {
	var opts []nats.Option
	n := 0
	for _, set := range []bool{f.creds != "", f.nkey != "", f.user != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, usagef("give one of --creds, --nkey and --user")
	}
	if f.password != "" && f.user == "" {
		return nil, usagef("--password goes with --user")
	}
	switch {
	case f.creds != "":
		if _, err := os.Stat(f.creds); err != nil {
			return nil, fmt.Errorf("--creds: %w", err)
		}
		opts = append(opts, nats.UserCredentials(f.creds))
	case f.nkey != "":
		o, err := nats.NkeyOptionFromSeed(f.nkey)
		if err != nil {
			return nil, fmt.Errorf("--nkey %s: %w", f.nkey, err)
		}
		opts = append(opts, o)
	case f.user != "":
		pw := f.password
		if pw == "" {
			pw = os.Getenv(passwordEnv)
		}
		opts = append(opts, nats.UserInfo(f.user, pw))
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, usagef("--tls-cert and --tls-key go together")
	}
	if f.tlsCA != "" {
		opts = append(opts, nats.RootCAs(f.tlsCA))
	}
	if f.tlsCert != "" {
		opts = append(opts, nats.ClientCert(f.tlsCert, f.tlsKey))
	}
	if f.inboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(f.inboxPrefix))
	}
	return opts, nil
}

// redactURL hides the credentials of each URL in a comma-separated server
// list: the password, or a lone user part (which NATS reads as a token).
func redactURL(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			if strings.Contains(p, "@") { // unparsable but holding user info
				parts[i] = "[redacted]@" + p[strings.LastIndex(p, "@")+1:]
			}
			continue
		}
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx")
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}
