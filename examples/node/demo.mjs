#!/usr/bin/env node
// demo.mjs — the four ways to call bertq from Node.js, against a running
// stack. Prints one JSON line per step on stdout.
//
//   node demo.mjs --server nats://127.0.0.1:4222 --model bert-large-mrpc \
//                 [--pairs pairs.json] [--backlog]
//
// pairs.json is an array of {"a": "...", "b": "..."}. With --backlog the demo
// starts by queueing every pair while no worker need run, prints
// {"step":"backlog-published"}, then waits for the answers: start a worker
// then.
import { parseArgs } from "node:util";
import { readFileSync } from "node:fs";
import { connect, createInbox } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import { collect, infer, publishDirect } from "./bertq.mjs";

const { values: opts } = parseArgs({
  options: {
    server: { type: "string", default: "nats://127.0.0.1:4222" },
    model: { type: "string", default: "bert-large-mrpc" },
    pairs: { type: "string" },
    backlog: { type: "boolean", default: false },
    timeout: { type: "string", default: "60000" },
  },
});
const timeout = Number(opts.timeout);
const pairs = opts.pairs
  ? JSON.parse(readFileSync(opts.pairs, "utf8"))
  : [{ a: "The cat sat on the mat.", b: "A cat was sitting on the mat." }];
const out = (line) => process.stdout.write(JSON.stringify(line) + "\n");
const run = Date.now().toString(36);

const nc = await connect({ servers: opts.server, name: "bertq-node-demo" });
const js = jetstream(nc);
try {
  // 1. A backlog: queued while no worker runs, collected once one does.
  //    Subscribe first: answers are core NATS messages, for listeners only.
  if (opts.backlog) {
    const inbox = createInbox();
    const sub = nc.subscribe(inbox);
    await nc.flush();
    const acks = [];
    for (const [i, p] of pairs.entries()) {
      const ack = await publishDirect(js, opts.model, { id: `node-${run}-backlog-${i}`, a: p.a, b: p.b }, inbox);
      acks.push({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate });
    }
    out({ step: "backlog-published", count: pairs.length, acks });
    const replies = await collect(sub, pairs.length, timeout);
    out({ step: "backlog", replies: pairs.map((_, i) => replies.get(`node-${run}-backlog-${i}`)) });
  }

  // 2. Request/reply through the intake, in JSON and in msgpack.
  for (const encoding of ["json", "msgpack"]) {
    const replies = [];
    for (const [i, p] of pairs.entries()) {
      replies.push(await infer(nc, opts.model, { id: `node-${run}-${encoding}-${i}`, a: p.a, b: p.b }, { encoding, timeout }));
    }
    out({ step: encoding, replies });
  }

  // 3. JetStream direct: publish with the reply header, check the PubAck.
  {
    const inbox = createInbox();
    const sub = nc.subscribe(inbox);
    await nc.flush();
    const acks = [];
    for (const [i, p] of pairs.entries()) {
      const ack = await publishDirect(js, opts.model, { id: `node-${run}-direct-${i}`, a: p.a, b: p.b }, inbox, { encoding: "msgpack" });
      acks.push({ stream: ack.stream, seq: ack.seq, duplicate: ack.duplicate });
    }
    const replies = await collect(sub, pairs.length, timeout);
    out({ step: "direct", acks, replies: pairs.map((_, i) => replies.get(`node-${run}-direct-${i}`)) });
  }
} finally {
  await nc.drain();
}
