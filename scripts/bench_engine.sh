#!/usr/bin/env bash
# Engine throughput: `edgec perplexity` against llama.cpp's `llama-perplexity` on
# the same GGUF files, the same text, context and thread count, in the same run.
#
# Two models: the largest checkpoint in $EDGEC_SHARED/models (skip it with
# EDGEC_BENCH_SKIP_SHARED=1), and a generated Llama-shaped checkpoint (random
# weights, seed 1; default ~0.4 B parameters, 1.6 GB as F32: hidden 2048, ffn
# 5632, 6 layers, 32 heads, 4 KV heads, vocab 32000). Each is converted to F32
# and quantized to Q8_0 and Q4_K_M; for each type both tools run alternately
# REPS times on CHUNKS chunks of CTX tokens of the held-out text and the best
# tokens/s (tokens evaluated / wall time, model loading included for both) and
# the ratio edgec / llama.cpp are printed.
#
# Usage: scripts/bench_engine.sh [BUILD_DIR]
#   LLAMA_CPP_BIN  folder with llama-perplexity (without it only edgec is timed)
#   EDGEC_BENCH_SHAPE, EDGEC_BENCH_TYPES ("F32 Q8_0 Q4_K_M"), EDGEC_BENCH_CTX (256),
#   EDGEC_BENCH_CHUNKS (8), EDGEC_BENCH_REPS (3), EDGEC_BENCH_THREADS (2), EDGEC_SHARED
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shape=${EDGEC_BENCH_SHAPE:---hidden 2048 --ffn 5632 --layers 6 --heads 32 --kv-heads 4 --vocab 32000}
types=${EDGEC_BENCH_TYPES:-F32 Q8_0 Q4_K_M}
ctx=${EDGEC_BENCH_CTX:-256}
chunks=${EDGEC_BENCH_CHUNKS:-8}
reps=${EDGEC_BENCH_REPS:-3}
threads=${EDGEC_BENCH_THREADS:-2}
shared=${EDGEC_SHARED:-../shared}
text=$shared/data/tinystories_heldout.txt
gen=$build/tests/tools/edgec-genmodel
edgec=$build/edgec
[ -x "$gen" ] && [ -x "$edgec" ] || { echo "bench_engine: build first (ninja -C $build)" >&2; exit 4; }
[ -f "$text" ] || { echo "bench_engine: $text not found (set EDGEC_SHARED)" >&2; exit 4; }
peer=""
if [ -n "${LLAMA_CPP_BIN:-}" ] && [ -x "$LLAMA_CPP_BIN/llama-perplexity" ]; then
    peer=$LLAMA_CPP_BIN/llama-perplexity
    export LD_LIBRARY_PATH=$LLAMA_CPP_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-bench-engine-XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
n_tok=$((ctx * chunks))
now() { date +%s.%N; }

bench_model() { # NAME DIR: DIR/F32.gguf exists; quantizes it and times both tools
    local name=$1 dir=$2
    echo
    echo "model: $name; text $text; ctx $ctx, $chunks chunks ($n_tok tokens), $threads threads, best of $reps"
    echo "F32 file: $(python3 -c "import os; print(f'{os.path.getsize(\"$dir/F32.gguf\")/1e9:.2f}')") GB"
    printf '%-8s %14s %14s %8s %10s %10s\n' type "edgec tok/s" "llama tok/s" ratio "edgec ppl" "llama ppl"
    for t in $types; do
        f=$dir/$t.gguf
        [ -f "$f" ] || "$edgec" quantize "$dir/F32.gguf" -o "$f" --type "$t" -q
        best_e=0 best_l=0 ppl_e="" ppl_l=""
        for _ in $(seq 1 "$reps"); do
            t0=$(now)
            ppl_e=$("$edgec" perplexity "$f" --text "$text" --ctx "$ctx" --chunks "$chunks" \
                --threads "$threads" -q --json | sed -n 's/.*"ppl": \([0-9.]*\).*/\1/p')
            t1=$(now)
            best_e=$(awk -v b="$best_e" -v a="$t0" -v c="$t1" -v n="$n_tok" 'BEGIN { r = n / (c - a); print (r > b ? r : b) }')
            if [ -n "$peer" ]; then
                t0=$(now)
                "$peer" -m "$f" -f "$text" -c "$ctx" -b "$ctx" --chunks "$chunks" -t "$threads" \
                    >"$work/peer.out" 2>&1 || { tail -5 "$work/peer.out" >&2; exit 1; }
                t1=$(now)
                ppl_l=$(sed -n 's/.*Final estimate: PPL = \([0-9.]*\).*/\1/p' "$work/peer.out")
                best_l=$(awk -v b="$best_l" -v a="$t0" -v c="$t1" -v n="$n_tok" 'BEGIN { r = n / (c - a); print (r > b ? r : b) }')
            fi
        done
        ratio=$(awk -v e="$best_e" -v l="$best_l" 'BEGIN { if (l > 0) printf "%.2f", e / l; else print "-" }')
        printf '%-8s %14.1f %14.1f %8s %10s %10s\n' "$t" "$best_e" "$best_l" "$ratio" "$ppl_e" "${ppl_l:--}"
    done
}

# 1. the largest shared checkpoint (its own tokenizer and text)
largest=""
for m in "$shared"/models/*/; do
    [ -f "$m/config.json" ] && [ -f "$m/model.safetensors" ] || continue
    if [ -z "$largest" ] || [ "$(stat -c %s "$m/model.safetensors")" -gt "$(stat -c %s "$largest/model.safetensors")" ]; then
        largest=${m%/}
    fi
done
if [ -n "$largest" ] && [ -z "${EDGEC_BENCH_SKIP_SHARED:-}" ]; then
    mkdir -p "$work/shared"
    "$edgec" convert "$largest" -o "$work/shared/F32.gguf" --outtype f32 -q
    bench_model "$(basename "$largest") (shared, HF checkpoint converted to F32)" "$work/shared"
fi

# 2. a generated Llama-shaped checkpoint (>= 1 GB as F32 by default)
mkdir -p "$work/gen"
# shellcheck disable=SC2086
"$gen" "$work/gen/model" $shape --seed 1 --dtype f32 >/dev/null
"$edgec" convert "$work/gen/model" -o "$work/gen/F32.gguf" --outtype f32 -q
rm -rf "$work/gen/model"
bench_model "generated: $shape" "$work/gen"
