#!/usr/bin/env bash
# The seed's demo on one machine, from scratch: an embedded broker, a compile
# worker, a compile job for synthetic:bert-large (bf16, batch 4, seq 128), a
# worker with --parallel 4 printing real inferences/s every second, and the
# 48-client producer. Every process is stopped on exit.
#
#   CLIENTS=48 CYCLE=4 PARALLEL=4 PORT=4222 PRECISION=bf16 scripts/demo.sh   # the defaults
#   PRECISION=int8 scripts/demo.sh                                           # the int8 engine
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/bertq}
CLIENTS=${CLIENTS:-48}
CYCLE=${CYCLE:-4}          # the seed used 128; 4 keeps the demo to a few minutes on 2 cores
PARALLEL=${PARALLEL:-4}
PORT=${PORT:-4222}
PRECISION=${PRECISION:-bf16}
MODEL=${MODEL:-bert-large-mrpc}
WORK=$(mktemp -d -t bertq-demo.XXXXXX)
URL="nats://127.0.0.1:${PORT}"
pids=()

# Stop in reverse order of start, so the broker outlives its clients' drains.
cleanup() {
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

step() { printf '\n== %s\n' "$*"; }

step "broker: embedded nats-server with JetStream on 127.0.0.1:${PORT}, store ${WORK}/store"
"$BIN" broker --listen "127.0.0.1:${PORT}" --store "$WORK/store" 2>"$WORK/broker.log" &
pids+=($!)
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null && break
	sleep 0.1
done

step "compile worker"
"$BIN" compiler --nats "$URL" --work-dir "$WORK/compile" 2>"$WORK/compiler.log" &
pids+=($!)

step "compile job: synthetic:bert-large → ${MODEL} (${PRECISION}, batch 4, seq 128)"
# The intake answers once the broker has provisioned; until then there are no responders.
for try in $(seq 50); do
	if "$BIN" compile --submit --nats "$URL" --model "$MODEL" --input synthetic:bert-large \
		--precision "$PRECISION" --batch 4 --seq 128 2>"$WORK/submit.err"; then
		break
	fi
	if ! grep -q "no responders" "$WORK/submit.err" || [ "$try" = 50 ]; then
		cat "$WORK/submit.err" >&2
		exit 1
	fi
	sleep 0.2
done
grep -v "no responders" "$WORK/submit.err" >&2 || true

step "worker: ${PARALLEL} core-bound loops on one durable consumer (logs real inferences/s every second)"
"$BIN" worker --nats "$URL" --model "$MODEL" --parallel "$PARALLEL" --cache "$WORK/cache" --metrics "" &
pids+=($!)

step "producer: ${CLIENTS} clients × ${CYCLE} requests"
"$BIN" producer --nats "$URL" --model "$MODEL" --clients "$CLIENTS" --cycle "$CYCLE" --timeout 10m
