#!/usr/bin/env bash
# Interop check for `edgec prune`: pruned GGUFs must load in llama.cpp and
# predict what edgec's engine predicts on the same file.
#
# Prunes stories260K and stories-student-256 (SparseGPT 50 % and 2:4) and
# stories-student-256 structurally (heads=2,ffn=0.25 and layers=1), with
# calibration windows from the first 90 % of tinystories_valid_sample.txt (the
# held-out text is its last 10 %). For each GGUF, edgec-engine-top evaluates
# the first 128 tokens of tinystories_heldout.txt and scripts/interop/
# engine_check.mjs has llama.cpp (node-llama-cpp's prebuilt CPU binaries)
# evaluate the same tokens: top tokens must agree at >= 95 % of positions.
# Without node/npm, node-llama-cpp or the shared models: SKIP, exit 0 (1 under
# CI=true). Environment: EDGEC_BIN, EDGEC_TOP (build/tests/tools/
# edgec-engine-top), EDGEC_SHARED.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
interop_name=interop_prune
. scripts/interop/setup.sh
shared="${EDGEC_SHARED:-$(cd .. && pwd)/shared}"
[ -d "$shared/models" ] || skip "shared test material not found (set EDGEC_SHARED)"
edgec="${EDGEC_BIN:-$root/build/edgec}"
top="${EDGEC_TOP:-$root/build/tests/tools/edgec-engine-top}"
[ -x "$edgec" ] && [ -x "$top" ] || { echo "interop_prune: build first (ninja -C build)" >&2; exit 4; }
need_node_llama_cpp
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-interop-prune-XXXXXX")
trap 'rm -rf "$work"' EXIT
sample="$shared/data/tinystories_valid_sample.txt"
heldout="$shared/data/tinystories_heldout.txt"
head -c $(( $(stat -c %s "$sample") - $(stat -c %s "$heldout") )) "$sample" >"$work/calib.txt"
cal=(--calib "$work/calib.txt" --calib-samples "${CALIB_SAMPLES:-64}" -q)
m260="$shared/models/stories260K" m256="$shared/models/stories-student-256"
run() { local out=$1; shift; "$edgec" prune "$@" -o "$work/$out.gguf" "${cal[@]}" >/dev/null ||
        echo "interop_prune: edgec prune $out failed" >&2; }
run stories260K-sparsegpt-50 "$m260" --method sparsegpt --sparsity 0.5
run stories260K-sparsegpt-2of4 "$m260" --method sparsegpt --pattern 2:4
run student256-sparsegpt-50 "$m256" --method sparsegpt --sparsity 0.5
run student256-sparsegpt-2of4 "$m256" --method sparsegpt --pattern 2:4
run student256-heads2-ffn25 "$m256" --structured heads=2,ffn=0.25
run student256-layers1 "$m256" --structured layers=1
for g in "$work"/*.gguf; do
    "$top" "$g" "$heldout" 128 >"${g%.gguf}.edgec.json" || echo "interop_prune: engine failed on $g" >&2
done
cd scripts/interop
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node engine_check.mjs --dir "$work" --min-agree 0.95 --name interop_prune
rc=$?
[ $rc -eq 77 ] && skip "node-llama-cpp could not be loaded"
exit $rc
