// bertq.mjs — calling bertq with the official NATS client for Node.js.
//
// bertq promises that any NATS client can call it. These few functions are
// all it takes: a request/reply on bert.infer.<model> (JSON or msgpack), or
// a JetStream publish to bertq.work.infer.<model> carrying the reply inbox in
// the Bertq-Reply-To header, the request id as Nats-Msg-Id (the stream
// de-duplicates by it), and a check of the PubAck.
import { headers } from "@nats-io/transport-node";
import { decode, encode } from "@msgpack/msgpack";

export const STREAM = "BERTQ_INFER";
export const inferSubject = (model) => `bert.infer.${model}`;
export const workSubject = (model) => `bertq.work.infer.${model}`;

const CONTENT_TYPE = { json: "application/json", msgpack: "application/msgpack" };

// encodeRequest returns the payload and headers of a request. req is
// {id, a, b} or {id, input_ids, token_type_ids, attention_mask}; deadline, a
// Date, travels as RFC 3339 text in JSON and as a msgpack timestamp.
export function encodeRequest(req, encoding = "json") {
  const h = headers();
  h.set("Content-Type", CONTENT_TYPE[encoding]);
  if (encoding === "msgpack") {
    return { data: encode(req), headers: h };
  }
  const body = { ...req };
  if (body.deadline instanceof Date) body.deadline = body.deadline.toISOString();
  return { data: JSON.stringify(body), headers: h };
}

// BertqError is an error reply: code is one of bertq's stable codes
// (queue_full, unknown_model, wrong_length, ...).
export class BertqError extends Error {
  constructor(code, message, reply) {
    super(`${code}: ${message}`);
    this.name = "BertqError";
    this.code = code;
    this.reply = reply;
  }
}

// decodeReply decodes a reply message in the encoding it came in, and throws
// a BertqError for an error reply.
export function decodeReply(msg) {
  const type = msg.headers?.get("Content-Type") ?? "";
  let reply;
  if (msg.data.length > 0) {
    reply = type.includes("msgpack") ? decode(msg.data) : msg.json();
  }
  const code = reply?.error?.code ?? msg.headers?.get("Bertq-Error");
  if (code) {
    throw new BertqError(code, reply?.error?.message ?? msg.headers?.get("Nats-Service-Error") ?? "", reply);
  }
  if (!reply) throw new Error("empty reply");
  return reply;
}

// infer asks the intake and waits for the worker's answer.
export async function infer(nc, model, req, { encoding = "json", timeout = 10_000 } = {}) {
  const deadline = new Date(Date.now() + timeout);
  const { data, headers: h } = encodeRequest({ ...req, deadline }, encoding);
  const msg = await nc.request(inferSubject(model), data, { timeout, headers: h });
  return decodeReply(msg);
}

// publishDirect puts a request straight into the JetStream work queue; the
// answer goes to replyTo (an inbox the caller subscribed to). It returns the
// PubAck after checking that bertq's stream stored the request.
export async function publishDirect(js, model, req, replyTo, { encoding = "json" } = {}) {
  const { data, headers: h } = encodeRequest(req, encoding);
  h.set("Bertq-Reply-To", replyTo);
  const ack = await js.publish(workSubject(model), data, { msgID: req.id, headers: h });
  if (ack.stream !== STREAM) {
    throw new Error(`request ${req.id} was stored by stream ${ack.stream}, not ${STREAM}`);
  }
  if (ack.duplicate) {
    throw new Error(`request ${req.id}: the stream already holds this id (de-duplication); send a fresh id`);
  }
  return ack;
}

// collect waits for n replies on sub, keyed by request id.
export async function collect(sub, n, timeout = 60_000) {
  const replies = new Map();
  const timer = setTimeout(() => sub.unsubscribe(), timeout);
  for await (const msg of sub) {
    let reply;
    try {
      reply = decodeReply(msg);
    } catch (err) {
      reply = err.reply ?? { error: { code: err.code ?? "bad_reply", message: err.message } };
    }
    replies.set(reply.id, reply);
    if (replies.size >= n) break;
  }
  clearTimeout(timer);
  if (replies.size < n) {
    throw new Error(`collected ${replies.size} of ${n} replies within ${timeout} ms`);
  }
  return replies;
}
