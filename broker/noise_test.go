package broker_test

import (
	"bytes"
	"context"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/schemas"
)

// TestIntakeUnknownNamesDoNotStall: 1,000 requests for made-up model names,
// interleaved with 100 valid ones, while every bucket lookup hangs. The valid
// requests are all queued regardless (no lookup stands in their way), the
// made-up names beyond the few lookups allowed in flight are refused at
// once, and the intake holds no more names than the bucket does. The same
// load's effect on latency is measured by BenchmarkIntakeUnknownNames.
func TestIntakeUnknownNamesDoNotStall(t *testing.T) {
	e := startBroker(t)
	if err := broker.Provision(ctxT(t), e.js); err != nil {
		t.Fatal(err)
	}
	putModel(t, e, "tiny")
	release := make(chan struct{})
	var held atomic.Int64
	in, err := broker.StartIntake(e.nc, broker.WithLookupWrap(func(model string, lookup func(string) (bool, error)) (bool, error) {
		held.Add(1)
		<-release
		return lookup(model)
	}))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			close(release)
			in.Stop()
		}
	}()
	var valid, noise atomic.Int64
	var wrongCode atomic.Value
	sub, err := e.nc.Subscribe(schemas.WorkSubject("tiny"), func(*nats.Msg) { valid.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	noiseInbox := nats.NewInbox()
	nsub, err := e.nc.Subscribe(noiseInbox, func(m *nats.Msg) {
		if c := m.Header.Get(schemas.HeaderErrorCode); c != schemas.CodeUnknownModel {
			wrongCode.Store(c)
		}
		noise.Add(1)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer nsub.Unsubscribe()

	for i := 0; i < 100; i++ {
		for k := 0; k < 10; k++ {
			if err := e.nc.PublishRequest(schemas.InferSubject("made-up-"+nuid.Next()), noiseInbox, []byte(`{"a":"x"}`)); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.nc.PublishRequest(schemas.InferSubject("tiny"), nats.NewInbox(), []byte(`{"a":"x"}`)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every valid request queued while the lookups hang", func() bool { return valid.Load() == 100 })
	waitFor(t, "the made-up names beyond the lookups in flight refused", func() bool { return noise.Load() == 1000-broker.MaxLookups })
	if h, f := held.Load(), broker.LookupsInFlight(in); h != broker.MaxLookups || f != broker.MaxLookups {
		t.Errorf("%d lookups started, %d in flight; want %d", h, f, broker.MaxLookups)
	}
	if n := broker.KnownModels(in); n != 1 {
		t.Errorf("the intake holds %d names; the bucket holds 1", n)
	}
	close(release)
	waitFor(t, "every made-up name answered once the lookups end", func() bool { return noise.Load() == 1000 })
	if c := wrongCode.Load(); c != nil {
		t.Errorf("a made-up name was answered with code %q, want %s", c, schemas.CodeUnknownModel)
	}
	stopped = true
	in.Stop()
	if f, n := broker.LookupsInFlight(in), broker.KnownModels(in); f != 0 || n > 1 {
		t.Errorf("after stopping: %d lookups in flight, %d names held", f, n)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkIntakeUnknownNames measures valid requests' latency through the
// intake (send → queued) alone and after 10 made-up names each, alternated,
// with the intake 1 ms (each way) from its server as across a network, so
// that any per-request wait for the bucket shows. It reports both p99s and
// their ratio (the target: within 2×).
func BenchmarkIntakeUnknownNames(b *testing.B) {
	e := startBroker(b)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, e.js); err != nil {
		b.Fatal(err)
	}
	putModel(b, e, "tiny")
	inc, err := nats.Connect(delayProxy(b, e.b.ClientURL(), time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer inc.Close()
	in, err := broker.StartIntake(inc)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Stop()
	arrived := make(chan string, 64)
	sub, err := e.nc.Subscribe(schemas.WorkSubject("tiny"), func(m *nats.Msg) { arrived <- m.Header.Get(schemas.HeaderMsgID) })
	if err != nil {
		b.Fatal(err)
	}
	defer sub.Unsubscribe()
	var noiseAnswered atomic.Int64
	noiseInbox := nats.NewInbox()
	nsub, err := e.nc.Subscribe(noiseInbox, func(*nats.Msg) { noiseAnswered.Add(1) })
	if err != nil {
		b.Fatal(err)
	}
	defer nsub.Unsubscribe()
	noiseSent := int64(0)
	send := func(noisy bool) time.Duration {
		if noisy {
			for k := 0; k < 10; k++ {
				if err := e.nc.PublishRequest(schemas.InferSubject("made-up-"+nuid.Next()), noiseInbox, []byte(`{"a":"x"}`)); err != nil {
					b.Fatal(err)
				}
				noiseSent++
			}
		}
		id := nuid.Next()
		start := time.Now()
		if err := e.nc.PublishRequest(schemas.InferSubject("tiny"), nats.NewInbox(), []byte(`{"id":"`+id+`","a":"x"}`)); err != nil {
			b.Fatal(err)
		}
		for got := ""; got != id; {
			select {
			case got = <-arrived:
			case <-time.After(20 * time.Second):
				b.Fatalf("request %s never reached the queue", id)
			}
		}
		d := time.Since(start)
		for noiseAnswered.Load() < noiseSent { // the next request starts clean
			time.Sleep(100 * time.Microsecond)
		}
		return d
	}
	var quiet, noisy []time.Duration
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			quiet = append(quiet, send(false))
		} else {
			noisy = append(noisy, send(true))
		}
	}
	if len(noisy) == 0 {
		return
	}
	pq, pn := p99(quiet), p99(noisy)
	b.ReportMetric(float64(median(quiet).Microseconds())/1000, "p50-quiet-ms")
	b.ReportMetric(float64(median(noisy).Microseconds())/1000, "p50-noisy-ms")
	b.ReportMetric(float64(pq.Microseconds())/1000, "p99-quiet-ms")
	b.ReportMetric(float64(pn.Microseconds())/1000, "p99-noisy-ms")
	b.ReportMetric(float64(pn)/float64(pq), "p99-ratio")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)*99+99)/100-1]
}

// delayProxy forwards TCP connections to the server at url, each byte
// arriving delay late in either direction (latency, not a bandwidth limit),
// and returns the URL to connect to instead.
func delayProxy(t testing.TB, url string, delay time.Duration) string {
	t.Helper()
	target := strings.TrimPrefix(url, "nats://")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go delayCopy(s, c, delay)
			go delayCopy(c, s, delay)
		}
	}()
	return "nats://" + ln.Addr().String()
}

// delayCopy copies src to dst, holding each chunk until delay after it was read.
func delayCopy(dst, src net.Conn, delay time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 4096)
	go func() {
		defer dst.Close()
		for c := range q {
			time.Sleep(time.Until(c.at))
			if _, err := dst.Write(c.b); err != nil {
				return
			}
		}
	}()
	defer close(q)
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			q <- chunk{bytes.Clone(buf[:n]), time.Now().Add(delay)}
		}
		if err != nil {
			return
		}
	}
}
