#!/usr/bin/env bash
# GPU acceptance run of the CUDA engine backend, on a machine with an NVIDIA
# GPU and no Go toolchain. Run it from the repository root with binaries
# built on a Go machine (`go tool task gpu-build`):
#
#   CGO_ENABLED=0 go build -o .gpu/bertq ./cmd/bertq
#   CGO_ENABLED=0 go test -c -o .gpu/cuda.test ./engine/cuda
#
# and the test fixtures at .gpu/testdata, the checkout's testdata/
# or $BERTQ_TESTDATA (golden-pairs.json, models/tiny-fp32, models/small-bf16).
#
#   scripts/gpu-check.sh [summary-file]
#
# The summary (default $OUT/gpu-summary.txt, else ./gpu-summary.txt) gets one
# block per run, appended; full logs go to gpu-logs/ beside it. Exit status 1
# when a step failed. Steps, chosen with STEPS (default all, in this order):
#
#   probe  what the backend finds: libraries, driver, device (TestCUDA's log)
#   tests  TestCUDA: the kernels and the forward against the Go engine, graph
#          replay, concurrent runners, golden logits of the fixture checkpoints
#   bench  BenchmarkForward (random BERT-Large weights) and `bertq bench
#          --device cuda` on synthetic:bert-large compiled for each of BATCHES
#          (the first one verified against float64 on the GPU by the compiler)
#   e2e    bertq broker + bertq worker --device cuda + bertq producer --json
#          on the first compiled artifact
#
# Each run of this script must fit the GPU machine's per-command limit; split
# it when needed (artifacts are kept in $WORK, default .gpu/work, and reused):
#
#   STEPS="probe tests" scripts/gpu-check.sh && STEPS="bench e2e" scripts/gpu-check.sh
#
# Knobs: GPU_DIR (.gpu), WORK (.gpu/work), SOURCE (synthetic:bert-large),
# BATCHES ("4 128"), SEQ (128), PRECISION (bf16), BENCH_SECONDS (10),
# BENCH_CORES ("1 2": runners, one stream each), TEST_BENCH (1: also run
# BenchmarkForward), CLIENTS (48), CYCLE (8), PARALLEL (4), PORT (4333).
set -uo pipefail
cd "$(dirname "$0")/.."

GPU_DIR=${GPU_DIR:-.gpu}
BIN=$GPU_DIR/bertq
TEST=$GPU_DIR/cuda.test
SUMMARY=${1:-${OUT:+$OUT/gpu-summary.txt}}
SUMMARY=${SUMMARY:-gpu-summary.txt}
STEPS=${STEPS:-probe tests bench e2e}
WORK=${WORK:-$GPU_DIR/work}
SOURCE=${SOURCE:-synthetic:bert-large}
BATCHES=${BATCHES:-4 128}
SEQ=${SEQ:-128}
PRECISION=${PRECISION:-bf16}
BENCH_SECONDS=${BENCH_SECONDS:-10}
BENCH_CORES=${BENCH_CORES:-1 2}
TEST_BENCH=${TEST_BENCH:-1}
CLIENTS=${CLIENTS:-48}
CYCLE=${CYCLE:-8}
PARALLEL=${PARALLEL:-4}
PORT=${PORT:-4333}

mkdir -p "$(dirname "$SUMMARY")" "$WORK"
LOGS=$(cd "$(dirname "$SUMMARY")" && pwd)/gpu-logs
mkdir -p "$LOGS"
WORK=$(cd "$WORK" && pwd)
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
TEST=$(cd "$(dirname "$TEST")" && pwd)/$(basename "$TEST")
failed=0
pids=()

cleanup() {
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		kill -TERM "${pids[i]}" 2>/dev/null || true
		wait "${pids[i]}" 2>/dev/null || true
	done
}
trap cleanup EXIT INT TERM

say() { printf '%s\n' "$*" | tee -a "$SUMMARY"; }
quote() { sed 's/^/    /' | tee -a "$SUMMARY"; }
has_step() { [[ " $STEPS " == *" $1 "* ]]; }

# step NAME SECONDS CMD...: runs CMD with a time limit, its output in
# gpu-logs/NAME.log, and records the outcome.
step() {
	local name=$1 limit=$2 start rc
	shift 2
	start=$(date +%s)
	timeout --kill-after=15 "$limit" "$@" >"$LOGS/$name.log" 2>&1
	rc=$?
	if [ "$rc" -eq 0 ]; then
		say "[ok]   $name ($(($(date +%s) - start))s)"
	else
		[ "$rc" -eq 124 ] && rc="timeout after ${limit}s"
		say "[FAIL] $name: exit $rc after $(($(date +%s) - start))s (log: gpu-logs/$name.log)"
		failed=1
	fi
	return 0
}

testdata=${BERTQ_TESTDATA:-}
for d in "$GPU_DIR/testdata" testdata; do
	[ -z "$testdata" ] && [ -f "$d/golden-pairs.json" ] && testdata=$(cd "$d" && pwd)
done

say ""
say "===== bertq GPU check $(date -u +%FT%TZ) on $(uname -n): steps: $STEPS"
for f in "$BIN" "$TEST"; do
	if [ ! -x "$f" ]; then
		say "[FAIL] missing $f: build it on a Go machine (see the top of $0)"
		exit 1
	fi
done
if command -v nvidia-smi >/dev/null; then
	nvidia-smi --query-gpu=index,name,driver_version,memory.total,compute_cap --format=csv,noheader 2>&1 | quote
fi
say "testdata: ${testdata:-none found (the golden tests will fail)}"

if has_step probe; then
	say ""
	say "== probe"
	step probe 120 "$TEST" -test.run '^TestCUDA$/^SymbolsResolve$' -test.v
	sed -n '/gpu_test.go.*cuda:/,/^=== RUN/p' "$LOGS/probe.log" | grep -v '^=== RUN' | quote
	grep -E -- '--- (SKIP|FAIL)|no CUDA' "$LOGS/probe.log" | head -5 | quote
fi

if has_step tests; then
	say ""
	say "== tests (TestCUDA, with -v; the Go engine is the reference)"
	step tests 540 env BERTQ_TESTDATA="$testdata" "$TEST" -test.run '^TestCUDA$' -test.v -test.count 1 -test.timeout 530s
	grep -E -- '^\s*--- (PASS|FAIL|SKIP)|max \|cuda|panic|Error' "$LOGS/tests.log" | quote
fi

artifact() { echo "$WORK/model-b$1-s$SEQ-$PRECISION.bertq"; }

if has_step bench || has_step e2e; then
	say ""
	say "== compile $SOURCE ($PRECISION, seq $SEQ) for batches: $BATCHES"
	first=1
	for b in $BATCHES; do
		a=$(artifact "$b")
		if [ -f "$a" ]; then
			say "[ok]   compile-b$b (kept from an earlier run: $a)"
			first=0
			continue
		fi
		verify=(--device cuda)
		[ "$first" = 1 ] || verify=(--no-verify)
		step "compile-b$b" 400 "$BIN" compile --input "$SOURCE" --output "$a" --batch "$b" --seq "$SEQ" \
			--precision "$PRECISION" "${verify[@]}"
		grep -E 'verified|took|shape' "$LOGS/compile-b$b.log" | quote
		first=0
	done
fi

if has_step bench; then
	say ""
	say "== bench"
	for b in $BATCHES; do
		if [ "$TEST_BENCH" = 1 ]; then
			step "benchmark-forward-b$b" 240 env BERTQ_BENCH_BATCH="$b" BERTQ_BENCH_PRECISION="$PRECISION" \
				"$TEST" -test.run '^$' \
				-test.bench '^BenchmarkForward$' -test.benchtime 5s -test.v
			grep -E '^BenchmarkForward|FAIL|no CUDA' "$LOGS/benchmark-forward-b$b.log" | quote
		fi
		a=$(artifact "$b")
		[ -f "$a" ] || continue
		for c in $BENCH_CORES; do
			step "bertq-bench-b$b-runners$c" 240 "$BIN" bench --artifact "$a" --device cuda --parallel "$c" \
				--seconds "$BENCH_SECONDS" --json
			grep -E '^(forward|roofline|bare|memory|\{)' "$LOGS/bertq-bench-b$b-runners$c.log" | quote
		done
	done
fi

if has_step e2e; then
	say ""
	say "== end to end: broker, worker --device cuda --parallel $PARALLEL, producer $CLIENTS clients × $CYCLE"
	first_batch=${BATCHES%% *}
	a=$(artifact "$first_batch")
	if [ ! -f "$a" ]; then
		say "[FAIL] e2e: no artifact $a"
		failed=1
	else
		url="nats://127.0.0.1:$PORT"
		store=$(mktemp -d -t bertq-gpu-store.XXXXXX)
		"$BIN" broker --listen "127.0.0.1:$PORT" --store "$store" >"$LOGS/e2e-broker.log" 2>&1 &
		pids+=($!)
		for _ in $(seq 100); do
			(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
			sleep 0.1
		done
		"$BIN" worker --nats "$url" --model bert-large-mrpc --artifact "$a" --device cuda \
			--parallel "$PARALLEL" --cache "$WORK/cache" --metrics "" >"$LOGS/e2e-worker.log" 2>&1 &
		worker=$!
		pids+=($worker)
		for _ in $(seq 600); do
			grep -q "worker serving" "$LOGS/e2e-worker.log" && break
			kill -0 "$worker" 2>/dev/null || break
			sleep 0.1
		done
		if ! kill -0 "$worker" 2>/dev/null; then
			say "[FAIL] e2e: the worker exited (log: gpu-logs/e2e-worker.log)"
			tail -5 "$LOGS/e2e-worker.log" | quote
			failed=1
		else
			# --direct: the worker serves a local file that is not in the model
			# bucket, so the intake would answer unknown_model.
			step e2e-producer 300 "$BIN" producer --nats "$url" --model bert-large-mrpc --direct \
				--clients "$CLIENTS" --cycle "$CYCLE" --timeout 4m --json --quiet
			tail -4 "$LOGS/e2e-producer.log" | quote
			grep -E 'engine backend|throughput' "$LOGS/e2e-worker.log" | tail -6 | quote
		fi
		cleanup
		pids=()
		rm -rf "$store"
	fi
fi

say ""
if [ "$failed" = 0 ]; then
	say "GPU check passed (steps: $STEPS)"
else
	say "GPU check FAILED (steps: $STEPS): see gpu-logs/"
fi
exit "$failed"
