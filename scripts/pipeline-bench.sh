#!/usr/bin/env bash
# The pipeline's own cost and speed, measured rather than assumed. Each
# section starts its own broker (intake included), worker and producer on
# this machine's cores, lets the load settle, and measures a steady window:
# answered/s from the worker's own counters, and CPU time from /proc for the
# broker, the worker (its pinned engine threads counted apart as "the model's
# own compute") and the producer. Every figure is a median over ROUNDS runs;
# runs of different binaries or modes alternate, so a machine that changes
# speed (other people's builds) hurts all of them alike. min–max spreads are
# printed beside the medians: read them before the medians.
#
# Sections (SECTIONS, default "cost busy mrpc"):
#   cost   the tiny model at --seq 32 --batch 4: broker and worker CPU per
#          answered request beyond the model's compute, and answered/s, this
#          build against OLD (a git revision, built once into bin/bertq-<rev>)
#   busy   the tiny model at --seq 32 --batch BUSY_BATCH (16: a batch of about
#          2 ms), one runner: the share of the window the engine was computing
#   mrpc   MRPC dev lengths, packed: answered/s end to end through NATS against
#          `bertq bench --lengths` (the engine alone) on the same cores
#   large  the seed's shape (synthetic:bert-large, batch 4 × 128, full-length
#          traffic): end to end against the engine alone
#
#   OLD=main SECTIONS="cost busy" ROUNDS=5 WINDOW=10 scripts/pipeline-bench.sh
#   SECTIONS=mrpc MRPC_ROUNDS=5 MRPC_WINDOW=120 scripts/pipeline-bench.sh
#   MODE=direct SECTIONS=cost scripts/pipeline-bench.sh   # producers publishing into JetStream
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/bertq}
OLD=${OLD:-}                 # a git revision to compare against in "cost" and "busy"
SECTIONS=${SECTIONS:-cost busy mrpc}
ROUNDS=${ROUNDS:-5}
WARM=${WARM:-3}              # seconds of load before the window opens
WINDOW=${WINDOW:-10}         # seconds measured
CLIENTS=${CLIENTS:-256}
PARALLEL=${PARALLEL:-$(nproc)}
WORKER_ARGS=${WORKER_ARGS:-}  # extra flags for this build's worker, e.g. "--prefetch 64"
MODE=${MODE:-intake}         # intake (request/reply via bert.infer.<model>) or direct (JetStream publish)
PORT=${PORT:-}               # default: a free one (other people run this script too)
TINY=${TINY:-testdata/models/tiny-fp32}
LENGTHS=${LENGTHS:-testdata/mrpc-dev-lengths.json}
BUSY_BATCH=${BUSY_BATCH:-16}  # 16 × 32 tokens: about 2 ms on a quiet 2-core Zen 3; try 8 on a busy host
MRPC_ART=${MRPC_ART:-.cache/large-bf16.bqa}
LARGE_ART=${LARGE_ART:-.cache/large-bf16.bqa}
MRPC_CLIENTS=${MRPC_CLIENTS:-48}   # the seed's 48: enough to keep every batch full
MRPC_WARM=${MRPC_WARM:-30}         # seconds: BERT-large batches take seconds on a CPU
MRPC_WINDOW=${MRPC_WINDOW:-120}
MRPC_ROUNDS=${MRPC_ROUNDS:-3}
WORK=$(mktemp -d -t bertq-pbench.XXXXXX)
# A port pair nobody listens on: a worker must never join someone else's broker.
free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if [ -z "$PORT" ]; then
	PORT=$((20000 + RANDOM % 40000))
	until free "$PORT" && free $((PORT + 1)); do PORT=$((20000 + RANDOM % 40000)); done
fi
URL="nats://127.0.0.1:${PORT}"
MPORT=$((PORT + 1))
TICK=$(getconf CLK_TCK)
pids=()

stop_all() {
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
	pids=()
}
cleanup() {
	stop_all
	[ -n "${KEEP:-}" ] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

command -v nats >/dev/null || { echo "the nats CLI is needed (go tool task setup)" >&2; exit 1; }

compile() { # compile OUT ARGS...
	local out=$1
	shift
	[ -f "$out" ] && return
	mkdir -p "$(dirname "$out")"
	"$BIN" compile --output "$out" "$@" >/dev/null
}

# oldbin REV: the binary of revision REV, built once beside this one.
oldbin() {
	local rev out src
	rev=$(git rev-parse --short "$1")
	out=bin/bertq-$rev
	if [ ! -x "$out" ]; then
		src=$(mktemp -d -t bertq-old.XXXXXX)
		git archive "$rev" | tar -x -C "$src"
		(cd "$src" && go build -o bertq ./cmd/bertq)
		mkdir -p bin
		mv "$src/bertq" "$out"
		rm -rf "$src"
	fi
	echo "$out"
}

# cpu PID: user + system CPU seconds of a process.
cpu() { awk -v t="$TICK" '{print ($14 + $15) / t}' "/proc/$1/stat"; }

# engine_cpu PID: CPU seconds of the threads pinned to one CPU: the engine
# runners (the Go runtime's threads keep the process's whole mask).
engine_cpu() {
	local s=0 d c
	for d in /proc/"$1"/task/*; do
		c=$(awk '/^Cpus_allowed_list/ {print $2}' "$d/status" 2>/dev/null) || continue
		case $c in *,* | *-*) continue ;; esac
		s=$(awk -v s="$s" -v t="$TICK" '{print s + ($14 + $15) / t}' "$d/stat" 2>/dev/null || echo "$s")
	done
	echo "$s"
}

# metric NAME: the sum of a worker metric's samples (all labels).
metric() { curl -s "http://127.0.0.1:${MPORT}/metrics" | awk -v n="$1" '$1 ~ "^"n"[{ ]" {s += $NF} END {print s + 0}'; }

# snapshot: one line of the figures the window is the difference of.
snapshot() {
	local ok
	ok=$(curl -s "http://127.0.0.1:${MPORT}/metrics" | awk '/^bertq_worker_requests_total/ && /code="ok"/ {s += $NF} END {print s + 0}')
	echo "$(date +%s.%N) $ok $(metric bertq_worker_batches_total) $(metric bertq_worker_compute_ms_sum) $(cpu "$BROKER") $(cpu "$WORKER") $(engine_cpu "$WORKER") $(cpu "$PRODUCER")"
}

# pipeline BIN ART PARALLEL [PRODUCER ARGS...]: one measured run; writes to
# $WORK/line "answered_per_s broker_ms worker_ms engine_ms producer_ms busy
# mean_batch ms_per_batch" (CPU milliseconds per answered request; busy: the
# share of the window the runners spent in the engine; ms_per_batch: engine
# time per batch).
pipeline() {
	local bin=$1 art=$2 par=$3
	shift 3
	local store="$WORK/store" log="$WORK/$(basename "$bin")"
	rm -rf "$store" "$WORK/cache"
	"$bin" broker --listen "127.0.0.1:${PORT}" --store "$store" 2>"$log.broker" &
	BROKER=$!
	pids+=("$BROKER")
	until grep -q "broker ready" "$log.broker" 2>/dev/null; do
		kill -0 "$BROKER" 2>/dev/null || { echo "the broker exited:" >&2; cat "$log.broker" >&2; exit 1; }
		sleep 0.05
	done
	# The intake only asks whether the model exists; the worker serves the file.
	echo "served from $art" >"$WORK/placeholder"
	local try
	for try in $(seq 10); do
		nats -s "$URL" object put bertq-models "$WORK/placeholder" --name bench --force --no-progress >/dev/null 2>"$WORK/put.err" && break
		[ "$try" = 10 ] && { cat "$WORK/put.err" >&2; exit 1; }
		sleep 0.5
	done
	local artflag=--model-file help
	help=$("$bin" worker -h 2>&1 || true) # older builds name the file flag --model-file
	case $help in *"-artifact "*) artflag=--artifact ;; esac
	# shellcheck disable=SC2086 # WORKER_ARGS: extra flags, split on spaces
	"$bin" worker --nats "$URL" --model bench $artflag "$art" --parallel "$par" \
		--metrics "127.0.0.1:${MPORT}" --cache "$WORK/cache" ${WORKER_ARGS:-} 2>"$log.worker" &
	WORKER=$!
	pids+=("$WORKER")
	until grep -q "worker serving" "$log.worker" 2>/dev/null; do
		kill -0 "$WORKER" 2>/dev/null || { echo "the worker exited:" >&2; cat "$log.worker" >&2; exit 1; }
		sleep 0.1
	done
	local direct=()
	[ "$MODE" = direct ] && direct=(--direct)
	"$bin" producer --nats "$URL" --model bench "${direct[@]}" --clients "$CLIENTS" --cycle 1000000 \
		--timeout 30m --quiet "$@" >"$log.producer" 2>&1 &
	PRODUCER=$!
	pids+=("$PRODUCER")
	sleep "$WARM"
	local a b
	a=$(snapshot)
	sleep "$WINDOW"
	b=$(snapshot)
	stop_all
	awk -v a="$a" -v b="$b" -v p="$par" 'BEGIN {
		split(a, x, " "); split(b, y, " ")
		dt = y[1] - x[1]; n = y[2] - x[2]; nb = y[3] - x[3]
		if (n <= 0) { print "0 0 0 0 0 0 0 0"; exit }
		eng = y[7] - x[7]
		printf "%.3f %.4f %.4f %.4f %.4f %.3f %.2f %.3f\n", n / dt, 1000 * (y[5] - x[5]) / n,
			1000 * ((y[6] - x[6]) - eng) / n, 1000 * eng / n, 1000 * (y[8] - x[8]) / n,
			(y[4] - x[4]) / (1000 * dt * p), n / nb, (y[4] - x[4]) / nb
	}' >"$WORK/line"
}

# median COLUMN FILE: median, min and max of a column.
stats() {
	awk -v c="$1" '{print $c}' "$2" | sort -g | awk '{v[NR] = $1} END {
		m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf "%.4g [%.4g–%.4g]", m, v[1], v[NR] }'
}

report() { # report LABEL FILE
	printf "%-10s answered/s %s\n           CPU ms per answered request: broker %s, worker beyond the model %s (sum %s), model %s, producer %s\n           engine busy %s, mean batch %s, engine ms per batch %s\n" "$1" \
		"$(stats 1 "$2")" "$(stats 2 "$2")" "$(stats 3 "$2")" "$(awk '{print $2 + $3}' "$2" | stats 1 -)" "$(stats 4 "$2")" "$(stats 5 "$2")" \
		"$(stats 6 "$2")" "$(stats 7 "$2")" "$(stats 8 "$2")"
}

# vs_engine ART [PRODUCER ARGS...]: this build end to end through NATS against
# `bertq bench` (the engine alone) on the same cores, alternated; BENCH_ARGS
# are bench's traffic flags, matching the producer's.
vs_engine() {
	local art=$1 name=$2
	shift 2
	: >"$WORK/$name.engine"
	: >"$WORK/$name.new"
	for r in $(seq "$ROUNDS"); do
		local e line
		# shellcheck disable=SC2086 # BENCH_ARGS: flags, split on spaces
		"$BIN" bench --artifact "$art" --parallel "$PARALLEL" --seconds "$WINDOW" $BENCH_ARGS --json >"$WORK/bench.out" 2>"$WORK/bench.err" ||
			{ cat "$WORK/bench.err" >&2; exit 1; }
		e=$(tail -n1 "$WORK/bench.out" | sed -E 's/.*"seq_per_s":([0-9.eE+-]+).*/\1/')
		echo "$e" >>"$WORK/$name.engine"
		pipeline "$BIN" "$art" "$PARALLEL" "$@"
		line=$(cat "$WORK/line")
		echo "$line" >>"$WORK/$name.new"
		echo "  round $r: engine alone $e seq/s; pipeline $line"
	done
	echo "engine alone answered/s $(stats 1 "$WORK/$name.engine") (bertq bench --parallel $PARALLEL $BENCH_ARGS)"
	report pipeline "$WORK/$name.new"
	awk 'NR == FNR {e[FNR] = $1; next} {print $1 / e[FNR]}' "$WORK/$name.engine" "$WORK/$name.new" >"$WORK/$name.ratio"
	echo "pipeline/engine per round: $(tr '\n' ' ' <"$WORK/$name.ratio") (median $(stats 1 "$WORK/$name.ratio"))"
}

# compare ART PARALLEL NAME [PRODUCER ARGS...]: this build against OLD, alternated.
compare() {
	local art=$1 par=$2 name=$3
	shift 3
	local bins=("$BIN") labels=(new)
	[ -n "$OLD" ] && bins+=("$(oldbin "$OLD")") && labels+=("old")
	: >"$WORK/$name.new"
	: >"$WORK/$name.old"
	for r in $(seq "$ROUNDS"); do
		for i in "${!bins[@]}"; do
			# Alternate which goes first.
			local j=$(((i + r) % ${#bins[@]}))
			local line
			pipeline "${bins[j]}" "$art" "$par" "$@"
			line=$(cat "$WORK/line")
			echo "  round $r ${labels[j]}: $line"
			echo "$line" >>"$WORK/$name.${labels[j]}"
		done
	done
	report new "$WORK/$name.new"
	[ -n "$OLD" ] && report "old $OLD" "$WORK/$name.old"
	if [ -n "$OLD" ]; then
		awk 'NR == FNR {n[FNR] = $1; next} {print n[FNR] / $1}' "$WORK/$name.new" "$WORK/$name.old" >"$WORK/$name.ratio"
		echo "new/old answered/s per round: $(tr '\n' ' ' <"$WORK/$name.ratio") (median $(stats 1 "$WORK/$name.ratio"))"
	fi
}

for s in $SECTIONS; do
	case $s in
	cost)
		compile .cache/tiny-s32-b4.bqa --input "$TINY" --precision fp32 --seq 32 --batch 4
		echo "== cost: tiny fp32, batch 4 × seq 32, worker --parallel $PARALLEL, $CLIENTS clients ($MODE), window ${WINDOW}s, $ROUNDS rounds"
		compare .cache/tiny-s32-b4.bqa "$PARALLEL" cost
		;;
	busy)
		art=.cache/tiny-s32-b$BUSY_BATCH.bqa
		compile "$art" --input "$TINY" --precision fp32 --seq 32 --batch "$BUSY_BATCH"
		echo "== busy: tiny fp32, batch $BUSY_BATCH × seq 32, worker --parallel 1, $CLIENTS clients ($MODE); engine alone:"
		"$BIN" bench --artifact "$art" --parallel 1 --seconds 5 2>/dev/null | grep -E '^forward'
		compare "$art" 1 busy
		;;
	mrpc)
		[ -f "$MRPC_ART" ] || compile "$MRPC_ART" --input synthetic:bert-large
		echo "== mrpc: $MRPC_ART, MRPC dev lengths, packed, worker --parallel $PARALLEL against the engine alone, $MRPC_CLIENTS clients, window ${MRPC_WINDOW}s, $MRPC_ROUNDS rounds"
		ROUNDS=$MRPC_ROUNDS WARM=$MRPC_WARM WINDOW=$MRPC_WINDOW CLIENTS=$MRPC_CLIENTS BENCH_ARGS="--lengths $LENGTHS" vs_engine "$MRPC_ART" mrpc --lengths "$LENGTHS"
		;;
	large)
		[ -f "$LARGE_ART" ] || compile "$LARGE_ART" --input synthetic:bert-large
		echo "== large: $LARGE_ART, full-length traffic (the seed's shape), worker --parallel $PARALLEL against the engine alone, $MRPC_CLIENTS clients, window ${MRPC_WINDOW}s, $MRPC_ROUNDS rounds"
		# Every pair 62 + 63 WordPiece tokens: 128 with [CLS] and two [SEP], as bench's default traffic.
		echo '{"a_tokens":[62],"b_tokens":[63]}' >"$WORK/full.json"
		ROUNDS=$MRPC_ROUNDS WARM=$MRPC_WARM WINDOW=$MRPC_WINDOW CLIENTS=$MRPC_CLIENTS BENCH_ARGS="" vs_engine "$LARGE_ART" large --lengths "$WORK/full.json"
		;;
	*)
		echo "unknown section $s" >&2
		exit 2
		;;
	esac
done
