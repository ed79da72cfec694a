// Package faults holds bertq's fault tests: the pipeline is run with real
// parts (embedded or separate nats-server brokers on 127.0.0.1, the tiny
// checkpoint compiled once per test binary, worker processes of the bertq
// binary built once per test binary) and then hurt on purpose, while every
// request is counted: sent, answered, answered twice (duplicates), lost.
// Lost must be 0 in every test: at-least-once delivery means a fault may
// cause a request to be computed twice, never that it goes unanswered.
//
// The faults:
//
//   - TestWorkerSIGKILL: a worker process is killed with SIGKILL while it
//     holds unacked requests, ten times under a steady load, a new process
//     started each time; the dead worker's requests come back after AckWait.
//   - TestBrokerRestartBacklog: 10 000 requests wait in the file store while
//     the broker restarts on the same store and port, once shut down, once a
//     `bertq broker` process killed with SIGKILL right after the last PubAck;
//     every message is still there byte for byte, and every reply matches a
//     direct engine run of its pair.
//   - TestClusterNodeLoss: three `bertq broker --config` processes form an R3
//     JetStream cluster; the stream and consumer leader is killed with SIGKILL
//     under load, then restarted, more than once. Two clients that retry on
//     silence or unavailable (as deploy/README.md asks of callers) must lose
//     nothing: one re-sending with fresh ids, and the producer with --retry
//     (WithRetry), re-sending the same id. Without a retry, a request in
//     flight through the killed node gets no reply at all (core NATS request
//     leg).
//   - TestQueueFullBackpressure: a queue of 50 with no worker refuses the
//     excess out loud (queue_full replies, "maximum messages exceeded" publish
//     errors); accepted + refused = sent, and every accepted request is
//     answered once a worker starts.
//   - TestExpiredBacklog: requests whose deadline passed while no worker ran
//     are answered deadline_exceeded without running the model.
//   - TestWorkerSIGTERMDrain: SIGTERM makes a worker process finish and ack
//     what it holds before it exits: nothing unacked, nothing answered twice.
//
// Each test logs one line "FAULT <name> key=value ..." with its figures; run
// `go test -v -run . ./test/faults | grep FAULT` to see them. BERTQ_LONG=1
// runs longer variants (more kills, more requests, more rounds). TestClusterConfigs
// checks that deploy/cluster's nats-server files parse and agree.
// BERTQ_FAULTS_DEVICE picks the engine backend (default auto).
package faults
