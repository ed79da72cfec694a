// Package worker serves one compiled model from JetStream: N loops, each with
// its own engine Runner pinned to a core, share the model's durable pull
// consumer; each loop blocks for a first request, tops the static batch up
// with whatever else is already queued, pads the rest with dummy rows that
// are never answered or counted, runs the batch, and answers every real
// request on the inbox it carried (Bertq-Reply-To) before acking it.
//
// Bad requests get an error reply with a stable schemas code and are
// terminated, never redelivered; engine failures are retried up to the
// consumer's MaxDeliver and then dead-lettered. Cancelling Run drains: no new
// fetches, the batch in hand is finished and acked.
package worker
