#!/usr/bin/env bash
# End-to-end throughput through NATS versus the engine alone, on the same cores,
# in one run: `bertq bench` on N cores, then broker + worker --parallel N +
# producer (enough clients to keep every batch full). Prints both and their ratio.
#
#   CORES=2 SECONDS_BENCH=60 REQUESTS=240 scripts/pipeline-bench.sh [ARTIFACT]
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/bertq}
CORES=${CORES:-$(nproc)}
SECONDS_BENCH=${SECONDS_BENCH:-60}
CLIENTS=${CLIENTS:-48}
REQUESTS=${REQUESTS:-240}
PORT=${PORT:-14333}
ART=${1:-.cache/large-bf16.bqa}
WORK=$(mktemp -d -t bertq-pbench.XXXXXX)
URL="nats://127.0.0.1:${PORT}"
pids=()
cleanup() {
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	[ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

if [ ! -f "$ART" ]; then
	mkdir -p "$(dirname "$ART")"
	"$BIN" compile --input synthetic:bert-large --output "$ART"
fi

echo "== engine alone: bertq bench --parallel $CORES --seconds $SECONDS_BENCH"
"$BIN" bench --artifact "$ART" --parallel "$CORES" --seconds "$SECONDS_BENCH" --json >"$WORK/bench.out" 2>"$WORK/bench.err"
grep -v '^{' "$WORK/bench.out" || true
engine=$(tail -n1 "$WORK/bench.out" | sed -E 's/.*"seq_per_s":([0-9.eE+-]+).*/\1/')

echo "== through NATS: broker + worker --parallel $CORES + producer ($CLIENTS clients, $REQUESTS requests)"
"$BIN" broker --listen "127.0.0.1:${PORT}" --store "$WORK/store" 2>"$WORK/broker.log" &
pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/${PORT}") 2>/dev/null && break; sleep 0.1; done
MPORT=$((PORT + 1))
"$BIN" worker --nats "$URL" --model bench --artifact "$ART" --parallel "$CORES" --metrics "127.0.0.1:${MPORT}" 2>"$WORK/worker.log" &
pids+=($!)
until grep -q "worker serving" "$WORK/worker.log"; do
	if ! kill -0 "${pids[-1]}" 2>/dev/null; then
		echo "the worker exited:" >&2
		cat "$WORK/worker.log" >&2
		exit 1
	fi
	sleep 0.5
done
cycle=$(( (REQUESTS + CLIENTS - 1) / CLIENTS ))
"$BIN" producer --nats "$URL" --model bench --direct --clients "$CLIENTS" --cycle "$cycle" --timeout 30m --quiet --json >"$WORK/producer.out"
grep -v '^{' "$WORK/producer.out" || true
pipeline=$(tail -n1 "$WORK/producer.out" | sed -E 's/.*"throughput_per_s":([0-9.eE+-]+).*/\1/')
wall=$(tail -n1 "$WORK/producer.out" | sed -E 's/.*"wall_s":([0-9.eE+-]+).*/\1/')
# The engine's busy time, from the worker's own metrics: immune to the machine
# changing speed between the two phases above.
busy=$(curl -s "http://127.0.0.1:${MPORT}/metrics" | awk '/^bertq_worker_compute_ms_sum/ {s += $2} END {print s + 0}')

awk -v e="$engine" -v p="$pipeline" -v c="$CORES" -v b="$busy" -v w="$wall" 'BEGIN {
	printf "\nengine alone   %.3f seq/s on %d cores\npipeline       %.3f answered/s (worker --parallel %d)\nratio          %.3f  (pipeline cost %.1f%%)\n", e, c, p, c, p/e, 100*(1-p/e)
	printf "engine busy    %.1f%% of %d runners x %.1f s wall (the rest is queueing, I/O and the run'"'"'s ramp and tail)\n", 100*b/(c*w*1000), c, w
}'
