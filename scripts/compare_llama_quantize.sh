#!/usr/bin/env bash
# Byte-compare `edgec quantize --no-recipe` with a llama-quantize you have, on
# generated Qwen2, Mistral (head_dim 96, so 384-wide attn_output rows that
# need fallback types) and biased-Llama checkpoints.
#
# Usage: LLAMA_CPP_BIN=DIR scripts/compare_llama_quantize.sh [BUILD_DIR] [TYPES...]
# DIR holds llama-quantize (and its shared libraries). Each model is converted
# to an F32 GGUF by edgec, then quantized by both from that file. Prints one
# line per model x type (identical, or the tensors whose types or bytes
# differ) and "compare: N identical, N differ". edgec follows llama.cpp
# c392e509 (the golden runs); newer llama.cpp picks other fallback types for
# Q2_K/Q3_K rows that fit no 256-block (Q4_0 where c392e509 took IQ4_NL), so
# a difference there is expected and named.
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift $(( $# > 0 ? 1 : 0 ))
types=("$@")
[ ${#types[@]} -gt 0 ] || types=(Q8_0 Q4_0 Q4_1 Q5_0 Q5_1 Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K IQ4_NL IQ4_XS)
q="${LLAMA_CPP_BIN:-}/llama-quantize"
[ -x "$q" ] || { echo "compare: set LLAMA_CPP_BIN to a folder with llama-quantize" >&2; exit 2; }
edgec=$build/edgec gen=$build/tests/tools/edgec-genmodel
[ -x "$edgec" ] && [ -x "$gen" ] || { echo "compare: build first (ninja -C $build)" >&2; exit 4; }
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-cmpq-XXXXXX")
trap 'rm -rf "$work"' EXIT
common=(--hidden 256 --ffn 512 --layers 2 --seed 7)
"$gen" "$work/qwen2" --arch qwen2 --heads 4 --kv-heads 2 "${common[@]}" >/dev/null || exit 4
"$gen" "$work/mistral" --arch mistral --heads 4 --kv-heads 1 --head-dim 96 --tied "${common[@]}" >/dev/null || exit 4
"$gen" "$work/llamabias" --attn-bias --mlp-bias --tokenizer llama-bpe --heads 8 --kv-heads 2 "${common[@]}" \
    >/dev/null || exit 4
same=0 diff=0
for m in qwen2 mistral llamabias; do
    "$edgec" convert "$work/$m" -o "$work/$m.gguf" --outtype f32 -q || exit 4
    for t in "${types[@]}"; do
        LD_LIBRARY_PATH="$LLAMA_CPP_BIN${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$q" "$work/$m.gguf" "$work/l.gguf" "$t" 2 \
            >"$work/l.log" 2>&1 || { echo "$m $t: llama-quantize failed (see below)"; tail -3 "$work/l.log"; diff=$((diff + 1)); continue; }
        "$edgec" quantize "$work/$m.gguf" -o "$work/e.gguf" --type "$t" --no-recipe -q 2>/dev/null || exit 4
        if cmp -s "$work/l.gguf" "$work/e.gguf"; then
            echo "$m $t: identical"
            same=$((same + 1))
        else
            d=$(diff <("$edgec" inspect "$work/l.gguf" | grep -E '^  (blk|token_embd|output)' | awk '{print $1, $2}') \
                     <("$edgec" inspect "$work/e.gguf" | grep -E '^  (blk|token_embd|output)' | awk '{print $1, $2}') |
                grep '^[<>]' | paste -sd' ' | cut -c1-300)
            if [ -n "$d" ]; then
                echo "$m $t: DIFFER (tensor types, llama.cpp < > edgec: $d)"
            else
                echo "$m $t: DIFFER (same tensor types, other bytes)"
            fi
            diff=$((diff + 1))
        fi
    done
done
echo "compare: $same identical, $diff differ"
