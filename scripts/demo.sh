#!/usr/bin/env bash
# README command (1): install dependencies, build, and run the main job on a
# small Llama-architecture checkpoint generated here with a fixed seed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
[ -f build/build.ninja ] || meson setup build >/dev/null
ninja -C build >/dev/null
out=${1:-out/demo}
mkdir -p "$out"
edgec=build/edgec
# (no `cmd | grep -q` / `cmd | head` under pipefail: the early exit of the
# reader makes the writer die of SIGPIPE, and the pipeline fail)
cmds=$($edgec help)
has() { grep -q "^  $1 " <<<"$cmds"; }
echo "== generate a small Llama checkpoint (hidden 256, 4 layers, GQA 8/4, vocab 512, seed 7)"
build/tests/tools/edgec-genmodel "$out/model" --hidden 256 --ffn 768 --layers 4 --heads 8 \
    --kv-heads 4 --vocab 512 --seed 7 >/dev/null
echo "== edgec convert (F16)"
$edgec convert "$out/model" -o "$out/model-f16.gguf" --outtype f16
if has quantize; then
    echo "== edgec quantize (Q4_K_M, straight from the checkpoint folder)"
    $edgec quantize "$out/model" -o "$out/model-q4_k_m.gguf" --type Q4_K_M
fi
printf 'Once upon a time there was a little robot who liked to count numbers.\n%.0s' $(seq 40) > "$out/text.txt"
if has quantize && ! has validate; then
    echo "== edgec perplexity: original vs Q4_K_M (random weights: the point is that they agree)"
    $edgec perplexity "$out/model" --text "$out/text.txt" --ctx 64 -q
    $edgec perplexity "$out/model-q4_k_m.gguf" --text "$out/text.txt" --ctx 64 -q
fi
if has validate; then
    echo "== edgec validate (Q4_K_M against the original)"
    $edgec validate "$out/model" "$out/model-q4_k_m.gguf" --text "$out/text.txt" --ctx 64 || true
fi
echo "== edgec inspect"
$edgec inspect "$out/model-f16.gguf" >"$out/inspect.txt"
head -20 "$out/inspect.txt"
