#!/usr/bin/env bash
# Throughput of `edgec distill-export` against `edgec perplexity` on the same model
# and text (issue "edgec distill-export": within 10 %), plus bytes per token.
#
# Both evaluate windows of L tokens in one batch with a fresh KV cache; perplexity
# needs logits for half the rows, distill-export for all of them, then top-k,
# log_softmax, quantization, zlib and fsync per shard. Runs alternate
# (perplexity, export, perplexity, ...) REPS times and the best of each is
# compared, which damps the noise of a machine shared with other jobs.
#
# Usage: scripts/bench_distill.sh [BUILD_DIR]
#   EDGEC_SHARED (default ../shared)  EDGEC_BENCH_MODEL (default stories-student-256)
#   EDGEC_BENCH_L=256  EDGEC_BENCH_K=64  EDGEC_BENCH_REPS=3  EDGEC_BENCH_THREADS=0 (all)
#
# Measured 2026-11-22 (2-core AMD EPYC shared with other helpers; see the figures
# printed at the end of each run and the commit message that records them).
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shared=${EDGEC_SHARED:-../shared}
model=$shared/models/${EDGEC_BENCH_MODEL:-stories-student-256}
text=$shared/data/tinystories_heldout.txt
L=${EDGEC_BENCH_L:-256}
K=${EDGEC_BENCH_K:-64}
reps=${EDGEC_BENCH_REPS:-3}
threads=${EDGEC_BENCH_THREADS:-0}
if [ ! -d "$build" ]; then
    meson setup "$build" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" -j2 edgec >/dev/null
edgec=$build/edgec
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-bench-distill-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "model: $model, text: $text, L $L, k $K, threads $threads, best of $reps"
field() { sed -n "s/.*\"$1\": \([0-9.]*\).*/\1/p" "$2"; }
best_ppl=0
best_dx=0
for r in $(seq 1 "$reps"); do
    "$edgec" perplexity "$model" --text "$text" --ctx "$L" --threads "$threads" --json -q >"$work/ppl.json"
    p=$(field tokens_per_s "$work/ppl.json")
    rm -rf "$work/out"
    "$edgec" distill-export "$model" --text "$text" --seq-len "$L" --top-k "$K" --threads "$threads" \
        -o "$work/out" --json -q >"$work/dx.json"
    x=$(field tokens_per_s "$work/dx.json")
    bpt=$(field bytes_per_token "$work/dx.json")
    echo "run $r: perplexity $p tokens/s, distill-export $x tokens/s ($bpt bytes/token)"
    best_ppl=$(awk -v a="$best_ppl" -v b="$p" 'BEGIN { print (b > a ? b : a) }')
    best_dx=$(awk -v a="$best_dx" -v b="$x" 'BEGIN { print (b > a ? b : a) }')
done
ratio=$(awk -v a="$best_dx" -v b="$best_ppl" 'BEGIN { printf "%.3f", a / b }')
echo "best: perplexity $best_ppl tokens/s, distill-export $best_dx tokens/s, ratio $ratio" \
    "($(awk -v r="$ratio" 'BEGIN { print (r >= 0.9 ? "within" : "NOT within") }') 10 %)"
echo "export: $(field n_tokens "$work/dx.json") tokens, $(field shard_bytes "$work/dx.json") shard bytes, $bpt bytes/token"
