#!/usr/bin/env bash
# Interop check: GGUF files written by `edgec convert` must load in llama.cpp
# and predict what llama.cpp predicts on its own conversion.
#
# Converts stories260K, stories-student-256 and tinystories-656K to F32, F16
# and BF16, then runs scripts/interop/check.mjs with node-llama-cpp's prebuilt
# CPU binaries (installed into scripts/interop/node_modules from the npm
# registry; nothing is downloaded from elsewhere or compiled). Prints a
# model x outtype PASS/FAIL table; exits 1 on any failure. Without node/npm,
# the package, or the shared models it prints SKIP and exits 0 (1 under CI=true).
#
# Environment: EDGEC_BIN (default build/edgec), EDGEC_SHARED (default ../shared).
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

interop_name=interop
. scripts/interop/setup.sh

shared="${EDGEC_SHARED:-$(cd .. && pwd)/shared}"
[ -d "$shared/models" ] || skip "shared test material not found (set EDGEC_SHARED)"
edgec="${EDGEC_BIN:-$root/build/edgec}"
if [ ! -x "$edgec" ]; then
    if command -v meson >/dev/null && command -v ninja >/dev/null; then
        [ -d build ] || meson setup build >/dev/null || exit 4
        ninja -C build >/dev/null || exit 4
    fi
fi
[ -x "$edgec" ] || { echo "interop: no edgec binary at $edgec" >&2; exit 4; }

need_node_llama_cpp

# quantized types checked besides the converted f32/f16/bf16 files
QTYPES=${EDGEC_INTEROP_QTYPES:-Q8_0 Q6_K Q5_K_M Q5_K_S Q5_1 Q5_0 Q4_K_M Q4_K_S Q4_1 Q4_0 IQ4_NL IQ4_XS Q3_K_L Q3_K_M Q3_K_S Q2_K}
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-interop-XXXXXX")
trap 'rm -rf "$work"' EXIT
for m in stories260K stories-student-256 tinystories-656K; do
    [ -d "$shared/models/$m" ] || skip "model $m missing under $shared/models"
    for t in f32 f16 bf16; do
        "$edgec" convert "$shared/models/$m" -o "$work/$m-$t.gguf" --outtype "$t" -q ||
            echo "interop: edgec convert $m --outtype $t failed" >&2
    done
    for q in $QTYPES; do
        lq=$(echo "$q" | tr 'A-Z' 'a-z')
        "$edgec" quantize "$shared/models/$m" -o "$work/$m-$lq.gguf" --type "$q" -q 2>/dev/null ||
            echo "interop: edgec quantize $m --type $q failed" >&2
    done
done

cd scripts/interop
NODE_LLAMA_CPP_SKIP_DOWNLOAD=true node check.mjs --gguf-dir "$work" --shared "$shared" \
    --types "f32,f16,bf16,$(echo $QTYPES | tr 'A-Z ' 'a-z,')"
rc=$?
[ $rc -eq 77 ] && skip "node-llama-cpp could not be loaded"
exit $rc
