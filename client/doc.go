// Package client calls bertq models from Go services over NATS.
//
//	nc, _ := nats.Connect(nats.DefaultURL)
//	c, _ := client.New(nc)
//	defer c.Close()
//	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
//	defer cancel()
//	r, err := c.Infer(ctx, "bert-large-mrpc", "The cat sat.", "A cat was sitting.")
//	switch {
//	case errors.Is(err, client.ErrQueueFull): // back off
//	case err != nil:                         // ...
//	default:                                 // r.Label, r.Probabilities
//	}
//
// # Calls
//
// Infer classifies a text pair and InferTokens a pre-tokenized sequence,
// both waiting for the answer; InferAsync returns a Future at once, for
// many requests in flight (as nats.go's PublishAsync does for JetStream).
// Enqueue puts a request into the queue and returns at its PubAck, for work
// whose answers are collected elsewhere (ParseReply decodes them).
//
// # Transports
//
// By default a request goes to the intake, bert.infer.<model>, a core NATS
// request; the intake checks that the model exists and queues the request in
// JetStream, answering only when it cannot. WithDirect publishes instead
// straight into the stream's work subject, bertq.work.infer.<model>, with
// the reply inbox in the Bertq-Reply-To header, and checks the PubAck.
// Either way a worker answers on the client's inbox.
//
// # Ids, inboxes and re-sends
//
// Every request has an id: a fresh NUID, or WithID's. The stream
// de-duplicates requests by id (the Nats-Msg-Id header), so sending one
// twice queues it once. WithRetry uses that: a call re-sends its request,
// same id, after a silence or an "unavailable" answer (a cluster electing a
// stream leader, an intake that died holding it), and reads a
// "duplicate_id" answer to a re-send as "an earlier copy is queued: keep
// waiting". The first send of an id that the stream already holds fails with
// ErrDuplicate, since the answer goes to whoever sent it first.
//
// A client subscribes once, to <inbox prefix>.*, and gives each call its own
// token below it; WithInboxPrefix picks the prefix (for users allowed to
// subscribe only below, say, _INBOX.myservice).
//
// # Deadlines
//
// A call ends at its context's deadline (or after WithTimeout when the
// context has none) with ErrTimeout, which also matches
// context.DeadlineExceeded. The request carries the deadline, so a worker
// that reaches it too late answers ErrDeadline instead of computing.
//
// # Errors
//
// An error answer is an *Error with the service's code and message; it
// matches that code's sentinel (ErrQueueFull, ErrUnknownModel,
// ErrWrongLength... one for each code in package schemas). The client's own
// failures are ErrTimeout, ErrNoResponders, ErrBadReply, ErrPublish and
// ErrClosed.
package client
