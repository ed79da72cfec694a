package broker

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/bertq/bertq/schemas"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"
)

// DefaultListen is where the broker listens unless told otherwise.
const DefaultListen = "127.0.0.1:4222"

// Broker is a running embedded nats-server with JetStream enabled.
type Broker struct {
	srv *server.Server
	url string
	log zerolog.Logger
}

// Option configures Start.
type Option func(*startOptions)

type startOptions struct {
	listen      string
	listenSet   bool
	storeDir    string
	configFile  string
	serverName  string
	log         zerolog.Logger
	readyWithin time.Duration
}

// WithListen sets the client listen address host:port; port -1 picks a free
// one (tests). It overrides a config file's host and port.
func WithListen(addr string) Option {
	return func(o *startOptions) { o.listen, o.listenSet = addr, true }
}

// WithStoreDir sets the JetStream file store directory. It overrides a config
// file's store_dir. Default: a config file's, else DefaultStoreDir().
func WithStoreDir(dir string) Option { return func(o *startOptions) { o.storeDir = dir } }

// WithConfigFile starts from a nats-server configuration file (clustering,
// TLS, accounts...); the other options override what they name.
func WithConfigFile(path string) Option { return func(o *startOptions) { o.configFile = path } }

// WithServerName names the server (default: nats-server's generated id).
func WithServerName(name string) Option { return func(o *startOptions) { o.serverName = name } }

// WithLogger receives the server's log lines (default: none).
func WithLogger(l zerolog.Logger) Option { return func(o *startOptions) { o.log = l } }

// WithReadyTimeout bounds how long Start waits for the server (default 10 s).
func WithReadyTimeout(d time.Duration) Option { return func(o *startOptions) { o.readyWithin = d } }

// DefaultStoreDir is $XDG_DATA_HOME/bertq/jetstream, or
// ~/.local/share/bertq/jetstream, or a directory under the system temp dir.
func DefaultStoreDir() string {
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "bertq", "jetstream")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "share", "bertq", "jetstream")
	}
	return filepath.Join(os.TempDir(), "bertq", "jetstream")
}

// Start runs an embedded nats-server with JetStream on a file store and waits
// until it accepts clients.
func Start(opts ...Option) (*Broker, error) {
	o := startOptions{listen: DefaultListen, log: zerolog.Nop(), readyWithin: 10 * time.Second}
	for _, fn := range opts {
		fn(&o)
	}
	sopts := &server.Options{}
	if o.configFile != "" {
		var err error
		if sopts, err = server.ProcessConfigFile(o.configFile); err != nil {
			return nil, fmt.Errorf("%w: config %s: %v", ErrStart, o.configFile, err)
		}
	}
	if o.configFile == "" || o.listenSet {
		host, port, err := splitListen(o.listen)
		if err != nil {
			return nil, err
		}
		sopts.Host, sopts.Port = host, port
	}
	switch {
	case o.storeDir != "":
		sopts.StoreDir = o.storeDir
	case sopts.StoreDir == "":
		sopts.StoreDir = DefaultStoreDir()
	}
	if err := os.MkdirAll(sopts.StoreDir, 0o750); err != nil {
		return nil, fmt.Errorf("%w: store directory: %v", ErrStart, err)
	}
	if o.serverName != "" {
		sopts.ServerName = o.serverName
	}
	sopts.JetStream = true
	sopts.NoSigs = true // the caller owns signals

	srv, err := server.NewServer(sopts)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStart, err)
	}
	srv.SetLogger(&serverLog{l: o.log}, o.log.GetLevel() <= zerolog.DebugLevel, o.log.GetLevel() <= zerolog.TraceLevel)
	srv.Start()
	if !srv.ReadyForConnections(o.readyWithin) {
		srv.Shutdown()
		return nil, fmt.Errorf("%w: not accepting clients on %s within %s", ErrStart, o.listen, o.readyWithin)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		return nil, fmt.Errorf("%w: JetStream did not start (store %s)", ErrStart, sopts.StoreDir)
	}
	b := &Broker{srv: srv, url: clientURL(srv), log: o.log}
	return b, nil
}

func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%w: listen address %q: %v", ErrStart, addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%w: listen address %q: bad port", ErrStart, addr)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	return host, port, nil
}

// clientURL is the server's URL, with a wildcard listen host replaced by the
// loopback address so that local clients can dial it.
func clientURL(srv *server.Server) string {
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		return srv.ClientURL()
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return srv.ClientURL()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		if ip.To4() != nil {
			host = "127.0.0.1"
		} else {
			host = "::1"
		}
	}
	u.Host = net.JoinHostPort(host, port)
	return u.String()
}

// ClientURL is the nats:// URL clients connect to.
func (b *Broker) ClientURL() string { return b.url }

// Server is the embedded server, for callers that need more of it.
func (b *Broker) Server() *server.Server { return b.srv }

// Shutdown stops the server; JetStream flushes its store.
func (b *Broker) Shutdown() { b.srv.Shutdown() }

// WaitForShutdown blocks until the server has shut down.
func (b *Broker) WaitForShutdown() { b.srv.WaitForShutdown() }

// serverLog forwards nats-server's log to zerolog, one event per line. The
// server's lines quote what clients sent (connection names, subjects), so
// they are bounded and cleaned like any other client text.
type serverLog struct{ l zerolog.Logger }

func (s *serverLog) Noticef(f string, v ...any) { s.l.Info().Str("src", "nats").Msg(serverLine(f, v)) }
func (s *serverLog) Warnf(f string, v ...any)   { s.l.Warn().Str("src", "nats").Msg(serverLine(f, v)) }
func (s *serverLog) Fatalf(f string, v ...any)  { s.l.Error().Str("src", "nats").Msg(serverLine(f, v)) }
func (s *serverLog) Errorf(f string, v ...any)  { s.l.Error().Str("src", "nats").Msg(serverLine(f, v)) }
func (s *serverLog) Debugf(f string, v ...any)  { s.l.Debug().Str("src", "nats").Msg(serverLine(f, v)) }
func (s *serverLog) Tracef(f string, v ...any)  { s.l.Trace().Str("src", "nats").Msg(serverLine(f, v)) }

func serverLine(f string, v []any) string { return schemas.Clip(fmt.Sprintf(f, v...), 1024) }
