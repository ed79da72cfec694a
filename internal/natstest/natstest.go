// Package natstest starts what bertq's tests need from NATS: an embedded
// broker with JetStream on a random loopback port and a temporary store, a
// client connection, and bertq's streams and buckets when asked. Everything
// stops when the test ends.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bertq/bertq/broker"
)

// Env is a running broker with one client connection.
type Env struct {
	Broker *broker.Broker
	NC     *nats.Conn
	JS     jetstream.JetStream
}

// Start runs an embedded broker (unprovisioned) on 127.0.0.1 with a
// t.TempDir() store; opts come after those defaults and can override them.
func Start(t testing.TB, opts ...broker.Option) *Env {
	t.Helper()
	b, err := broker.Start(append([]broker.Option{broker.WithListen("127.0.0.1:-1"), broker.WithStoreDir(t.TempDir())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Shutdown(); b.WaitForShutdown() })
	nc, err := nats.Connect(b.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &Env{Broker: b, NC: nc, JS: js}
}

// Provisioned is Start plus broker.Provision with popts.
func Provisioned(t testing.TB, popts ...broker.ProvisionOption) *Env {
	t.Helper()
	e := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, e.JS, popts...); err != nil {
		t.Fatal(err)
	}
	return e
}
