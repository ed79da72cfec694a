#!/usr/bin/env bash
# Runs every fuzz target of the module, one after the other.
#
#   scripts/fuzz.sh                  # CI: each target's execution budget (below)
#   FUZZTIME=10m scripts/fuzz.sh     # long run: 10 minutes per target
#   FUZZTIME=500000x scripts/fuzz.sh # or any -fuzztime value, for every target
#
# CI must not fail at random. A -fuzztime duration is a wall-clock deadline,
# and go1.26's fuzz coordinator can report that deadline as a failure (a bare
# "context deadline exceeded", no input written: golang/go#75804, fixed in Go
# 1.27). So by default each target runs a fixed number of executions, sized
# to about 10 s on the project's 2-core machine: no deadline at all, the same
# work on every run. Whatever the budget, a failure counts when the fuzzer
# wrote a reproducer to testdata/fuzz/<Target>/; a failure that wrote none and
# says only "context deadline exceeded" is that race, and the target is run
# again once. The seed corpora (testdata/fuzz included) are the gate under
# plain `go test ./...`; this adds new inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

# budget is a target's -fuzztime when FUZZTIME is unset: executions measured
# to take about 10 s each here (go tool task fuzz prints the time taken).
budget() {
	case "$1" in
	FuzzCodec) echo 150000x ;;
	FuzzEnsureID) echo 100000x ;;
	FuzzDecodeInferRequest) echo 120000x ;;
	FuzzDecodeCompileJob) echo 150000x ;;
	FuzzParseTSV) echo 30000x ;;
	FuzzTokenizeReference) echo 50000x ;;
	FuzzEncodePair) echo 50000x ;;
	FuzzLoadVocab) echo 70000x ;;
	FuzzParseConfig) echo 250000x ;;
	FuzzSafetensorsHeader) echo 150000x ;;
	FuzzSafetensorsFile) echo 200000x ;;
	FuzzParse) echo 200000x ;;
	FuzzParseCPUList) echo 160000x ;;
	FuzzHeader) echo 120000x ;;
	*) echo 50000x ;; # a new target: measure it and add a line above
	esac
}

# reproducers lists the inputs the fuzzer has written for a target.
reproducers() {
	local dir="$1/testdata/fuzz/$2"
	if [ -d "$dir" ]; then find "$dir" -type f | sort; fi
}

# fuzz runs one target; it returns 0, or 1 on a real failure.
fuzz() {
	local pkg=$1 dir=$2 target=$3 fuzztime=$4 attempt before log rc
	for attempt in 1 2; do
		before=$(reproducers "$dir" "$target")
		log=$(mktemp)
		rc=0
		# pipefail: rc is go test's status, not tee's.
		go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "$pkg" 2>&1 | tee "$log" || rc=$?
		local new
		new=$(comm -13 <(printf '%s\n' "$before") <(reproducers "$dir" "$target") | sed '/^$/d')
		if [ "$rc" -eq 0 ]; then
			rm -f "$log"
			return 0
		fi
		if [ -n "$new" ]; then
			echo "FAIL fuzz $target: reproducer written (replay it with go test -run '$target' $pkg):"
			printf '  %s\n' $new
			rm -f "$log"
			return 1
		fi
		if [ "$attempt" -eq 1 ] && grep -q 'context deadline exceeded' "$log"; then
			echo "fuzz $target: failed with a bare 'context deadline exceeded' and no reproducer (golang/go#75804); running it again once"
			rm -f "$log"
			continue
		fi
		echo "FAIL fuzz $target (no reproducer written; see the output above)"
		rm -f "$log"
		return 1
	done
}

failed=()
start=$SECONDS
for pkg in $(go list ./...); do
	targets=$(go test -list '^Fuzz' "$pkg" | grep '^Fuzz' || true)
	[ -n "$targets" ] || continue
	dir=$(go list -f '{{.Dir}}' "$pkg")
	for target in $targets; do
		fuzztime=${FUZZTIME:-$(budget "$target")}
		echo "fuzz $pkg $target (-fuzztime $fuzztime)"
		t0=$SECONDS
		fuzz "$pkg" "$dir" "$target" "$fuzztime" || failed+=("$target")
		echo "fuzz $target: $((SECONDS - t0)) s"
	done
done
echo "fuzz: every target in $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
	echo "fuzz: FAILED: ${failed[*]}"
	exit 1
fi
