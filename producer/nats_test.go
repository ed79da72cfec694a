package producer

import (
	"context"
	"testing"
	"time"

	"github.com/bertq/bertq/broker"
	"github.com/bertq/bertq/internal/natstest"
	"github.com/bertq/bertq/schemas"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startNATS runs an embedded JetStream server on a random loopback port with
// bertq's streams provisioned, and connects to it.
func startNATS(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	e := natstest.Provisioned(t, broker.WithMaxQueue(-1))
	return e.NC, e.JS
}

// decodeRequest decodes an InferRequest in whatever encoding it came.
func decodeRequest(t testing.TB, m *nats.Msg) (schemas.InferRequest, schemas.Encoding) {
	var r schemas.InferRequest
	enc := schemas.Detect(m.Header.Get(schemas.HeaderContentType), m.Data)
	if err := schemas.Unmarshal(enc, m.Data, &r); err != nil {
		t.Errorf("undecodable request: %v", err)
	}
	return r, enc
}

// sendReply publishes rep to subject in enc.
func sendReply(t testing.TB, nc *nats.Conn, subject string, enc schemas.Encoding, rep *schemas.InferReply) {
	data, err := schemas.Marshal(enc, rep)
	if err != nil {
		t.Error(err)
		return
	}
	msg := &nats.Msg{Subject: subject, Header: nats.Header{}, Data: data}
	msg.Header.Set(schemas.HeaderContentType, enc.ContentType())
	if rep.Error != nil {
		msg.Header.Set(schemas.HeaderErrorCode, rep.Error.Code)
	}
	if err := nc.PublishMsg(msg); err != nil {
		t.Error(err)
	}
}

// labels maps a pair's text to its label, so fakes can answer correctly.
func labels(pairs []Pair) map[string]int {
	m := make(map[string]int, len(pairs))
	for _, p := range pairs {
		m[p.A+"\x00"+p.B] = p.Label
	}
	return m
}

// fakeWorker answers the model's work stream (JetStream direct) correctly.
func fakeWorker(t *testing.T, nc *nats.Conn, js jetstream.JetStream, model string, pairs []Pair, seen func(*nats.Msg)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.CreateOrUpdateConsumer(ctx, schemas.InferStream, jetstream.ConsumerConfig{
		Durable: schemas.WorkerDurable(model), FilterSubject: schemas.WorkSubject(model), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	lab := labels(pairs)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		nm := &nats.Msg{Subject: m.Subject(), Header: m.Headers(), Data: m.Data()}
		if seen != nil {
			seen(nm)
		}
		req, enc := decodeRequest(t, nm)
		sendReply(t, nc, m.Headers().Get(schemas.HeaderReplyTo), enc, &schemas.InferReply{
			V: 1, ID: req.ID, Model: model, LabelIndex: lab[req.A+"\x00"+req.B], BatchSize: 2, Worker: "fake",
		})
		m.Ack()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
}
