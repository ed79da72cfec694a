// Package worker serves one compiled model from JetStream, as a pipeline of
// three stages joined by bounded queues:
//
//   - pull: two fetches kept outstanding on the model's shared durable pull
//     consumer bring requests ahead of need (the window follows the engine's
//     speed, see WithPrefetch); a decoder decodes, validates and tokenizes
//     each as it arrives, and it waits decoded for a loop.
//   - batch: N loops, each with its own engine Runner pinned to a core. A
//     loop blocks for a first request, then takes what is already waiting
//     while it fits engine.Limits (WithLimits: sequences and tokens). Packed
//     (PadNone, the default) the engine gets each request's real tokens only;
//     PadStatic keeps the seed's layout, every row padded to the compiled
//     length and short batches filled with dummy rows that are never
//     answered or counted.
//   - reply: the answers of a computed batch are published on the inboxes
//     the requests carried (Bertq-Reply-To), then the requests are acked, on
//     the same connection and without waiting for the server: the runner is
//     already on its next batch.
//
// Every request held (waiting, in a batch, being answered) is kept alive with
// InProgress while it waits, so a slow engine causes no redelivery.
//
// Bad requests get an error reply with a stable schemas code and are
// terminated, never redelivered; engine failures are retried up to the
// consumer's MaxDeliver and then dead-lettered. Cancelling Run drains: it
// stops pulling, lets the fetches in flight end, and answers and acks every
// request it pulled.
package worker
