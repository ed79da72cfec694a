#!/usr/bin/env bash
# bertq's engine against the peer (ONNX Runtime int8 on the same weights and
# cores, see ../shared/peer/README.md), alternated in rounds on this machine,
# medians and ratios at the end. The host is shared and noisy: only ratios
# within one run mean anything.
#
#   ROUNDS=3 SECONDS_EACH=20 scripts/peer-compare.sh [CONTENDER ...]
#
# Contenders (default: all): peer-static peer-b4 peer-b10 bf16-static
# bf16-padded bf16-packed int8-static int8-padded int8-packed int8-packed-b10;
# also bf16-packed-bucketed and int8-packed-bucketed (matmul primitives per
# bucket of rows instead of one with a runtime M), and int8-static-onednn and
# int8-packed-onednn (oneDNN's int8 matmuls where bertq would use its own).
# "static" is batch 4 × seq 128 with every token real; "padded" and "packed"
# run the MRPC dev lengths (testdata/mrpc-dev-lengths.json): padded to the
# compiled 128 (--pad static) or packed (--pad none); the peer pads each batch
# to its own longest pair.
# Needs: bin/bertq (go tool task build), node, and the peer set up in
# $PEER_DIR (default ~/.cache/bertq-peer) with its models.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/bertq}
ROUNDS=${ROUNDS:-3}
SECS=${SECONDS_EACH:-20}
PEER_DIR=${PEER_DIR:-$HOME/.cache/bertq-peer}
PEER_JS=${PEER_JS:-../shared/peer/bench_ort.js}
LENGTHS=testdata/mrpc-dev-lengths.json
OUT=${OUT:-$(mktemp -t bertq-peer-compare.XXXXXX)}
contenders=("$@")
[ ${#contenders[@]} -gt 0 ] || contenders=(peer-static peer-b4 peer-b10 bf16-static bf16-padded bf16-packed int8-static int8-padded int8-packed int8-packed-b10)

need_peer=false
for c in "${contenders[@]}"; do [[ $c == peer-* ]] && need_peer=true; done
if $need_peer && { [ ! -f "$PEER_JS" ] || [ ! -f "$PEER_DIR/bert-large-synth-int8.onnx" ]; }; then
	echo "peer-compare: the peer is not set up (want $PEER_JS and $PEER_DIR/bert-large-synth-int8.onnx; see ../shared/peer/README.md)" >&2
	exit 1
fi
artifact() { # precision batch
	local a=.cache/large-$1-b$2.bqa
	mkdir -p .cache
	[ -f "$a" ] || "$BIN" compile --input synthetic:bert-large --output "$a" --precision "$1" --batch "$2" --seq 128 >&2
	echo "$a"
}
run_one() {
	local peer=(node "$PEER_JS" --model "$PEER_DIR/bert-large-synth-int8.onnx" --threads 1 --streams 2 --seconds "$SECS")
	local b=("$BIN" bench --seconds "$SECS" --json)
	case $1 in
	peer-static) "${peer[@]}" ;;
	peer-b4) "${peer[@]}" --lengths "$LENGTHS" --batch 4 ;;
	peer-b10) "${peer[@]}" --lengths "$LENGTHS" --batch 10 ;;
	bf16-static) "${b[@]}" --artifact "$(artifact bf16 4)" ;;
	bf16-padded) "${b[@]}" --artifact "$(artifact bf16 4)" --lengths "$LENGTHS" --pad static ;;
	bf16-packed) "${b[@]}" --artifact "$(artifact bf16 4)" --lengths "$LENGTHS" ;;
	int8-static) "${b[@]}" --artifact "$(artifact int8 4)" ;;
	int8-padded) "${b[@]}" --artifact "$(artifact int8 4)" --lengths "$LENGTHS" --pad static ;;
	int8-packed) "${b[@]}" --artifact "$(artifact int8 4)" --lengths "$LENGTHS" ;;
	int8-packed-b10) "${b[@]}" --artifact "$(artifact int8 10)" --lengths "$LENGTHS" ;;
	bf16-packed-bucketed) "${b[@]}" --artifact "$(artifact bf16 4)" --lengths "$LENGTHS" --matmul-rows bucketed ;;
	int8-packed-bucketed) "${b[@]}" --artifact "$(artifact int8 4)" --lengths "$LENGTHS" --matmul-rows bucketed ;;
	int8-static-onednn) "${b[@]}" --artifact "$(artifact int8 4)" --gemm library ;;
	int8-packed-onednn) "${b[@]}" --artifact "$(artifact int8 4)" --lengths "$LENGTHS" --gemm library ;;
	*) echo "peer-compare: unknown contender $1" >&2; exit 2 ;;
	esac 2>/dev/null | grep '^{' | tail -n1
}

echo "results in $OUT"
for ((r = 1; r <= ROUNDS; r++)); do
	# Alternate the order round by round, so that a slow stretch of the host
	# does not always fall on the same contender.
	order=("${contenders[@]}")
	if ((r % 2 == 0)); then
		order=()
		for ((i = ${#contenders[@]} - 1; i >= 0; i--)); do order+=("${contenders[i]}"); done
	fi
	for c in "${order[@]}"; do
		line=$(run_one "$c")
		printf '%s\t%s\n' "$c" "$line" >>"$OUT"
		printf 'round %d  %-16s %s\n' "$r" "$c" "$(echo "$line" | grep -o '"seq\(_per_s\|PerS\)":[0-9.e+-]*')"
	done
done

node - "$OUT" <<'EOF'
const fs = require('fs');
const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => {
  const [name, json] = l.split('\t');
  const j = JSON.parse(json);
  return { name, sps: j.seq_per_s ?? j.seqPerS, peak: j.peak_ratio, share: j.gemm_share_median, isa: j.isa };
});
const med = (v) => { const s = [...v].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };
const by = {};
for (const r of rows) (by[r.name] ??= []).push(r);
const m = {};
console.log('\ncontender          median seq/s   runs           peak_ratio  gemm_share  isa');
for (const [name, rs] of Object.entries(by)) {
  m[name] = med(rs.map((r) => r.sps));
  const pk = rs[0].peak == null ? '' : med(rs.map((r) => r.peak)).toFixed(2);
  const sh = rs[0].share == null ? '' : med(rs.map((r) => r.share)).toFixed(3);
  console.log(`${name.padEnd(18)} ${m[name].toFixed(2).padStart(12)}   ${rs.map((r) => r.sps.toFixed(2)).join(' ').padEnd(14)} ${pk.padStart(10)} ${sh.padStart(11)}  ${rs[0].isa ?? ''}`);
}
const ratio = (a, b) => (m[a] && m[b] ? `${(m[a] / m[b]).toFixed(2)}×` : 'n/a');
const best = (...ks) => ks.filter((k) => m[k]).sort((a, b) => m[b] - m[a])[0];
const peerBest = best('peer-b4', 'peer-b10');
console.log('\nratios of medians');
console.log(`bf16 packed / bf16 padded (MRPC)     ${ratio('bf16-packed', 'bf16-padded')}`);
console.log(`int8 packed / int8 padded (MRPC)     ${ratio('int8-packed', 'int8-padded')}`);
console.log(`int8 / bf16, static 4×128            ${ratio('int8-static', 'bf16-static')}`);
console.log(`bf16 packed / peer best (${peerBest ?? 'n/a'})  ${ratio('bf16-packed', peerBest)}`);
console.log(`int8 packed / peer best (${peerBest ?? 'n/a'})  ${ratio('int8-packed', peerBest)}`);
console.log(`int8 packed b10 / peer best          ${ratio('int8-packed-b10', peerBest)}`);
console.log(`runtime M / bucketed M, bf16 packed  ${ratio('bf16-packed', 'bf16-packed-bucketed')}`);
console.log(`runtime M / bucketed M, int8 packed  ${ratio('int8-packed', 'int8-packed-bucketed')}`);
console.log(`own / oneDNN int8 GEMMs, static      ${ratio('int8-static', 'int8-static-onednn')}`);
console.log(`own / oneDNN int8 GEMMs, packed      ${ratio('int8-packed', 'int8-packed-onednn')}`);
console.log(`bf16 static / peer static            ${ratio('bf16-static', 'peer-static')}`);
console.log(`int8 static / peer static            ${ratio('int8-static', 'peer-static')}`);
EOF
