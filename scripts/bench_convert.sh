#!/usr/bin/env bash
# Benchmark `edgec convert` on a generated >= 1 GB Llama-shaped checkpoint.
#
# Prints: input size, largest tensor, peak RSS of edgec convert (GNU time -v),
# the memory bound 1.5 x largest tensor + 64 MB, and throughput next to a plain
# `cp` of the same bytes, measured in the same run.
#
# Usage: scripts/bench_convert.sh [BUILD_DIR] [WORK_DIR]
#   EDGEC_BENCH_SHAPE="--hidden 2048 --ffn 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000"
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
work=${2:-$(mktemp -d /tmp/edgec-bench-XXXXXX)}
shape=${EDGEC_BENCH_SHAPE:---hidden 2048 --ffn 5632 --layers 22 --heads 32 --kv-heads 4 --vocab 32000}
gen="$build/tests/tools/edgec-genmodel"
edgec="$build/edgec"
[ -x "$gen" ] && [ -x "$edgec" ] || { echo "bench_convert: build first (ninja -C $build)" >&2; exit 4; }
command -v /usr/bin/time >/dev/null || { echo "bench_convert: needs GNU time (apt-get install time)" >&2; exit 4; }

mkdir -p "$work"
model="$work/model"
if [ ! -f "$model/model.safetensors" ]; then
    echo "generating checkpoint ($shape, f32, seed 1) in $model" >&2
    # shellcheck disable=SC2086
    "$gen" "$model" $shape --seed 1 --dtype f32 >/dev/null
fi
in_bytes=$(stat -c %s "$model/model.safetensors")
largest=$("$edgec" inspect "$model" --json | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(max(t["bytes"] for t in d["tensors"]))')

sync
t0=$(date +%s.%N); cp "$model/model.safetensors" "$work/copy.bin"; sync "$work/copy.bin"; t1=$(date +%s.%N)
cp_s=$(python3 -c "print($t1-$t0)")
rm -f "$work/copy.bin"

for outtype in f16 f32; do
    rm -f "$work/out.gguf"
    /usr/bin/time -v -o "$work/time.txt" "$edgec" convert "$model" -o "$work/out.gguf" --outtype $outtype -q >/dev/null
    rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
    wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$work/time.txt")
    python3 - "$in_bytes" "$largest" "$rss_kb" "$wall" "$cp_s" "$outtype" <<'PY'
import sys
inb, largest, rss_kb, wall, cp_s, outtype = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5]), sys.argv[6]
parts = [float(x) for x in wall.split(":")]
sec = parts[-1] + (parts[-2] * 60 if len(parts) > 1 else 0) + (parts[-3] * 3600 if len(parts) > 2 else 0)
rss = rss_kb * 1024
bound = 1.5 * largest + 64 * 2**20
print(f"convert --outtype {outtype}: input {inb/1e9:.2f} GB, largest tensor {largest/2**20:.1f} MiB")
print(f"  peak RSS {rss/2**20:.1f} MiB  (bound 1.5 x largest + 64 MiB = {bound/2**20:.1f} MiB)  {'OK' if rss <= bound else 'OVER'}")
print(f"  edgec convert {sec:.2f} s = {inb/1e6/sec:.0f} MB/s;  cp {cp_s:.2f} s = {inb/1e6/cp_s:.0f} MB/s;  ratio edgec/cp time {sec/cp_s:.2f}")
PY
done
rm -f "$work/out.gguf"
echo "work dir: $work (remove it when done)"
