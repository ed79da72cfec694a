// Package broker runs bertq's message broker: an embedded nats-server with
// JetStream on a file store (Start), the idempotent creation of bertq's
// streams and buckets on any server or cluster (Provision), and the intake
// micro service that turns request/reply calls into queued work (StartIntake).
package broker
