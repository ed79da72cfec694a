// Package producer is bertq's load generator, the seed's 48 clients: each
// client sends its cycle of MRPC sentence pairs one request after another and
// waits for each reply, either through the intake (core NATS request on
// bert.infer.<model>) or straight into JetStream (bertq.work.infer.<model>,
// the PubAck being the receipt). The Summary reports throughput, latency
// percentiles, accuracy against the TSV labels, batch sizes, errors by code,
// lost and duplicate replies.
//
// # Run ids, request ids and inboxes
//
// The producer sends through package client, which owns ids on the wire,
// inboxes, encodings and re-sends (WithRetry: same id, dedup-safe). A run id
// is 10 random characters of [a-z0-9]. Every reply of a run goes to an inbox
// under
//
//	_INBOX.bertq.<run>.>
//
// which lies under _INBOX.>, the prefix accounts commonly let clients
// subscribe to (under a connection's custom inbox prefix, <prefix>.bertq.<run>.>).
// Replies no call waits for any more are matched by request id, so a second
// reply for an id is counted as a duplicate and a reply after the client
// gave up as late.
//
//   - Run: one client.Client per run, whose inbox prefix is
//     _INBOX.bertq.<run>, one token per request below it; request ids are
//     <run>-<c>-<seq> for client c's seq-th request.
//   - Backlog: the run id carries the count, <rand10>-<N>, so that a later
//     collector knows how many replies to wait for; the inbox is
//     _INBOX.bertq.<rand10>-<N>.b and request ids are
//     <rand10>-<N>-<seq>-<label>-<sent>, where label is the pair's MRPC
//     label and sent the publish time in Unix milliseconds, base 36: a
//     collector in another process can score accuracy and latency from the
//     replies alone.
//
// Backlog requests carry no deadline and are published to the stream, so
// they wait out any time without workers; their replies are core NATS
// messages, though, which only a subscribed collector receives. Start the
// collector (StartCollect, `bertq producer --collect RUNID`) before the
// workers, or publish with `--backlog N --wait`, which subscribes before
// publishing.
package producer
