#!/usr/bin/env bash
# Interop check for the Llama family beyond the shared checkpoints: Qwen2
# (q/k/v biases, NEOX RoPE, tied embeddings as in Qwen2.5-0.5B, byte-level
# BPE with Qwen2's split regex), Mistral (head_dim != hidden / heads, tied
# embeddings, YaRN RoPE scaling, SentencePiece), Llama with
# attention and MLP biases, linear RoPE scaling and a Llama 3 byte-level BPE
# tokenizer, and a Llama 3.2-style model (llama3 RoPE scaling, whose
# rope_freqs.weight edgec computes, tied embeddings, GQA 4/1).
#
# edgec-genmodel writes each as a random HF checkpoint (BF16, F16 and F32
# sources). edgec converts them (F32, F16, BF16), quantizes them (Q8_0,
# Q4_K_M, Q2_K), prunes them (SparseGPT 50 %, Wanda 2:4, and structurally:
# half the heads with a quarter of the FFN channels, one layer). For each
# GGUF, edgec-engine-top evaluates tests/data/arch_text.txt (digits,
# contractions, accents, CJK, an emoji, tabs, blank lines) and
# scripts/interop/engine_check.mjs has llama.cpp (node-llama-cpp's prebuilt
# CPU binaries) tokenize the same text and evaluate the same tokens: the
# tokens must be equal, the top tokens equal at >= 95 % of positions (90 %
# for quantized files: random weights leave top-two margins of 0.01 that
# another build's kernels flip), and the best logit equal within a relative
# 2e-3 for F32 and F16 files (llama.cpp keeps its KV cache in F16 and rounds
# activations to F16 for F16 weights), 1e-2 for BF16 ones (activations
# rounded to BF16) and 5e-2 for quantized ones (a missing bias moves it by
# 0.19). Needs no shared material. Without node/npm or node-llama-cpp: SKIP,
# exit 0 (1 under CI=true).
# Environment: EDGEC_BIN, EDGEC_TOP, EDGEC_GENMODEL (default build/...).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
interop_name=interop_arch
. scripts/interop/setup.sh
edgec="${EDGEC_BIN:-$root/build/edgec}"
top="${EDGEC_TOP:-$root/build/tests/tools/edgec-engine-top}"
gen="${EDGEC_GENMODEL:-$root/build/tests/tools/edgec-genmodel}"
[ -x "$edgec" ] && [ -x "$top" ] && [ -x "$gen" ] ||
    { echo "interop_arch: build first (ninja -C build)" >&2; exit 4; }
need_node_llama_cpp
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-interop-arch-XXXXXX")
trap 'rm -rf "$work"' EXIT
text="$root/tests/data/arch_text.txt"
for _ in $(seq 40); do cat "$text"; done >"$work/calib.txt"
fail=0
step() { "$@" >/dev/null 2>"$work/err" || { echo "interop_arch: FAILED: ${*##*/}" >&2; cat "$work/err" >&2; fail=1; }; }

common=(--hidden 256 --ffn 512 --layers 2 --seed 7)
step "$gen" "$work/qwen2" --arch qwen2 --heads 4 --kv-heads 2 --tied --dtype bf16 "${common[@]}"
step "$gen" "$work/mistral" --arch mistral --heads 4 --kv-heads 1 --head-dim 96 --tied --rope-scaling yarn \
    --dtype f16 "${common[@]}"
step "$gen" "$work/llamabias" --arch llama --attn-bias --mlp-bias --tokenizer llama-bpe --heads 8 \
    --kv-heads 2 --rope-scaling linear "${common[@]}"
step "$gen" "$work/llama3" --arch llama --tokenizer llama-bpe --rope-scaling llama3 --tied --heads 4 \
    --kv-heads 1 "${common[@]}"
mkdir -p "$work/f" "$work/b" "$work/q"
cal=(--calib "$work/calib.txt" --calib-samples 16 --calib-len 128 -q)
for m in qwen2 mistral llamabias llama3; do
    for t in f32 f16 bf16; do
        dir=f; [ $t = bf16 ] && dir=b
        step "$edgec" convert "$work/$m" -o "$work/$dir/$m-$t.gguf" --outtype $t -q
    done
    dir=f; [ $m = qwen2 ] && dir=b # pruned files keep the source's BF16
    for t in Q8_0 Q4_K_M Q2_K; do
        step "$edgec" quantize "$work/$m" -o "$work/q/$m-$(echo $t | tr A-Z a-z).gguf" --type $t -q
    done
    step "$edgec" prune "$work/$m" -o "$work/$dir/$m-sparsegpt50.gguf" --method sparsegpt --sparsity 0.5 "${cal[@]}"
    step "$edgec" prune "$work/$m" -o "$work/$dir/$m-wanda2of4.gguf" --method wanda --pattern 2:4 "${cal[@]}"
    step "$edgec" prune "$work/$m" -o "$work/$dir/$m-layers1.gguf" --structured layers=1 "${cal[@]}"
done
step "$edgec" prune "$work/qwen2" -o "$work/b/qwen2-heads2-ffn25.gguf" --structured heads=2,ffn=0.25 "${cal[@]}"
step "$edgec" prune "$work/llamabias" -o "$work/f/llamabias-heads4-ffn25.gguf" --structured heads=4,ffn=0.25 "${cal[@]}"
step "$edgec" prune "$work/qwen2" -o "$work/q/qwen2-heads2-q4_k_m.gguf" --structured heads=2 \
    --then-quantize Q4_K_M "${cal[@]}"
for g in "$work"/[fbq]/*.gguf; do
    [ -e "$g" ] || continue
    "$top" "$g" "$text" 0 >"${g%.gguf}.edgec.json" || { echo "interop_arch: engine failed on $g" >&2; fail=1; }
done
cd scripts/interop
check() {
    NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node engine_check.mjs --dir "$work/$1" --text "$text" --min-agree "$2" \
        --max-logit-diff "$3" --name "interop_arch ($4)" | tee -a "$work/log"
    local rc=${PIPESTATUS[0]}
    [ $rc -eq 77 ] && skip "node-llama-cpp could not be loaded"
    [ $rc -eq 0 ] || fail=1
}
check f 0.95 2e-3 "F32, F16"
check b 0.95 1e-2 "BF16"
check q 0.90 5e-2 "quantized"
n=$(ls "$work"/[fbq]/*.gguf 2>/dev/null | wc -l)
expected=39 # 4 models x (3 conversions, 3 quantized, 3 prunes) + 3 head prunes
[ "$n" -eq $expected ] || { echo "interop_arch: $n of $expected GGUF files were written" >&2; fail=1; }
passed=$(grep -c "^PASS" "$work/log"); failed=$((expected - passed))
echo "interop_arch: $passed passed, $failed failed"
[ $fail -eq 0 ] && [ "$passed" -eq $expected ]
