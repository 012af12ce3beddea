#!/usr/bin/env bash
# Benchmark `edgec quantize` on a generated >= 1 GB Llama-shaped checkpoint.
#
# Generates a TinyLlama-1.1B-shaped F32 checkpoint (random weights, seed 1),
# converts it to an F32 GGUF (llama-quantize reads only GGUF), then for
# Q8_0, Q4_K_M and Q2_K with 2 threads prints edgec's MB/s (input bytes / wall
# time) and peak RSS against the 1.5 x largest tensor + 64 MiB bound. With
# LLAMA_CPP_BIN (a folder holding llama-quantize) it runs llama-quantize on
# the same GGUF in the same run, prints the throughput ratio and whether the
# two outputs are byte-identical (edgec with --no-recipe).
#
# Usage: scripts/bench_quantize.sh [BUILD_DIR] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=${2:-$(mktemp -d /tmp/edgec-benchq-XXXXXX)}
shape=${EDGEC_BENCH_SHAPE:---hidden 2048 --ffn 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000}
types=${EDGEC_BENCH_TYPES:-Q8_0 Q4_K_M Q2_K}
gen="$build/tests/tools/edgec-genmodel"
edgec="$build/edgec"
[ -x "$gen" ] && [ -x "$edgec" ] || { echo "bench_quantize: build first (ninja -C $build)" >&2; exit 4; }
mkdir -p "$work"
if [ ! -f "$work/model/model.safetensors" ]; then
    echo "generating checkpoint ($shape, f32, seed 1)" >&2
    # shellcheck disable=SC2086
    "$gen" "$work/model" $shape --seed 1 --dtype f32 >/dev/null
fi
[ -f "$work/model-f32.gguf" ] || "$edgec" convert "$work/model" -o "$work/model-f32.gguf" --outtype f32 -q
in_bytes=$(stat -c %s "$work/model-f32.gguf")
largest=$("$edgec" inspect "$work/model-f32.gguf" --json | python3 -c '
import json,sys; print(max(t["bytes"] for t in json.load(sys.stdin)["tensors"]))')
peer=""
if [ -n "${LLAMA_CPP_BIN:-}" ] && [ -x "$LLAMA_CPP_BIN/llama-quantize" ]; then
    peer="$LLAMA_CPP_BIN/llama-quantize"
fi

measure() { # out_prefix command... -> prints "seconds rss_kb"
    local tf=$work/time.txt
    /usr/bin/time -v -o "$tf" "$@" >/dev/null 2>"$work/stderr.txt" || { cat "$work/stderr.txt" >&2; return 1; }
    python3 - "$tf" <<'PY'
import sys
t = dict(l.strip().rsplit(": ", 1) for l in open(sys.argv[1]) if ": " in l)
w = [float(x) for x in t["Elapsed (wall clock) time (h:mm:ss or m:ss)"].split(":")]
sec = w[-1] + (w[-2] * 60 if len(w) > 1 else 0) + (w[-3] * 3600 if len(w) > 2 else 0)
print(sec, t["Maximum resident set size (kbytes)"])
PY
}

echo "input: $work/model-f32.gguf, $(python3 -c "print(f'{$in_bytes/1e9:.2f}')") GB, largest tensor $((largest / 1048576)) MiB"
printf '%-8s %12s %12s %10s %14s %12s %10s %s\n' type edgec_s edgec_MB/s rss_MiB bound_MiB peer_s ratio identical
for t in $types; do
    rm -f "$work/e.gguf" "$work/p.gguf"
    read -r es erss < <(measure "$edgec" quantize "$work/model-f32.gguf" -o "$work/e.gguf" --type "$t" \
        --threads 2 --no-recipe -q)
    ps="-" ratio="-" ident="-"
    if [ -n "$peer" ]; then
        read -r ps prss < <(measure "$peer" "$work/model-f32.gguf" "$work/p.gguf" "$t" 2)
        ratio=$(python3 -c "print(f'{$ps/$es:.2f}x')")
        if cmp -s "$work/e.gguf" "$work/p.gguf"; then ident=yes; else ident=no; fi
    fi
    python3 - "$t" "$es" "$erss" "$in_bytes" "$largest" "$ps" "$ratio" "$ident" <<'PY'
import sys
t, es, erss, inb, largest, ps, ratio, ident = sys.argv[1:]
es, rss, inb, largest = float(es), int(erss) * 1024, int(inb), int(largest)
bound = 1.5 * largest + 64 * 2**20
print(f"{t:<8} {es:12.2f} {inb/1e6/es:12.0f} {rss/2**20:10.1f} {bound/2**20:10.1f} {'OK ' if rss <= bound else 'OVER'} {ps:>12} {ratio:>10} {ident}")
PY
done
[ -n "$peer" ] || echo "(set LLAMA_CPP_BIN to a folder with llama-quantize to compare with llama.cpp in the same run)"
echo "work dir: $work (remove it when done)"
