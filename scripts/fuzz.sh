#!/usr/bin/env bash
# Run one libFuzzer target for a number of seconds (clang from Debian's packages).
#
# Usage: scripts/fuzz.sh TARGET SECONDS     (TARGET: safetensors gguf config sp_model tokenizer_json imatrix
#                                    distill_shard distill_manifest, or all)
# The corpus lives in build-fuzz/corpus/TARGET (seeded from tests/fuzz/regress/TARGET and the
# shared models); crashes are written to build-fuzz/crashes/TARGET/ and the script exits 1.
# Any crash found must be copied to tests/fuzz/regress/TARGET/ (named for the defect) and fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:?usage: scripts/fuzz.sh TARGET SECONDS}
secs=${2:?usage: scripts/fuzz.sh TARGET SECONDS}
all_targets="safetensors gguf config sp_model tokenizer_json imatrix distill_shard distill_manifest"
if [ "$target" = all ]; then
    rc=0
    for t in $all_targets; do bash "$0" "$t" "$secs" || rc=1; done
    exit $rc
fi
[ "${EDGEC_FUZZ_NOBUILD:-0}" = 1 ] || EDGEC_WITH_FUZZ=1 bash scripts/install-deps.sh
shared="${EDGEC_SHARED:-$(cd .. && pwd)/shared}"
bdir=build-fuzz
if [ ! -f "$bdir/build.ninja" ]; then
    CC=clang meson setup "$bdir" -Dfuzz=true -Dopenmp=disabled -Db_sanitize=address,undefined \
        -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null
fi
[ "${EDGEC_FUZZ_NOBUILD:-0}" = 1 ] || ninja -C "$bdir" "tests/fuzz/fuzz_$target" >/dev/null
corpus="$bdir/corpus/$target"
crashes="$bdir/crashes/$target"
mkdir -p "$corpus" "$crashes"
cp -n tests/fuzz/regress/"$target"/* "$corpus"/ 2>/dev/null || true
if [ -d "$shared/models" ]; then
    case $target in
    config) for m in "$shared"/models/*/config.json; do cp -n "$m" "$corpus/$(basename "$(dirname "$m")").json"; done ;;
    sp_model) for m in "$shared"/models/*/tokenizer.model; do cp -n "$m" "$corpus/$(basename "$(dirname "$m")").model"; done ;;
    tokenizer_json) for m in "$shared"/models/tinystories-656K/tokenizer.json "$shared"/models/stories260K/tokenizer.json; do
                        cp -n "$m" "$corpus/$(basename "$(dirname "$m")").json"; done ;;
    imatrix) for m in "$shared"/golden/quantize/*.imatrix.dat; do cp -n "$m" "$corpus/"; done ;;
    safetensors | gguf)
        # A small, structurally complete seed (a few KB) keeps the exec rate high. Each
        # target writes only its own corpus: safetensors and gguf run side by side.
        gen=build/tests/tools/edgec-genmodel
        seed="$corpus/tiny.$target"
        if [ -x "$gen" ] && [ -x build/edgec ] && [ ! -f "$seed" ]; then
            tiny=$(mktemp -d)
            make_seed() {
                "$gen" "$tiny/m" --hidden 16 --ffn 32 --layers 1 --heads 2 --kv-heads 1 --vocab 300 >/dev/null || return 1
                case $target in
                safetensors) cp "$tiny/m/model.safetensors" "$seed" ;;
                gguf) build/edgec convert "$tiny/m" -o "$tiny/tiny.gguf" -q --outtype f16 && cp "$tiny/tiny.gguf" "$seed" ;;
                esac
            }
            make_seed || echo "fuzz $target: note: could not make the tiny seed; fuzzing the regression corpus only" >&2
            rm -rf "$tiny"
        fi ;;
    esac
fi
export ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
log="$bdir/fuzz_$target.log"
maxlen=65536
[ "$target" = tokenizer_json ] && maxlen=262144 # real tokenizer.json files are ~90 KB
set +e
"$bdir/tests/fuzz/fuzz_$target" "$corpus" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$maxlen" -artifact_prefix="$crashes/" -print_final_stats=1 >"$log" 2>&1
rc=$?
set -e
runs=$(grep -Eo 'Done [0-9]+ runs' "$log" | tail -1 | grep -Eo '[0-9]+' || echo 0)
n_crash=$(find "$crashes" -type f | wc -l)
echo "fuzz $target: ${runs} runs in ${secs} s, exit $rc, $n_crash crash/timeout/leak artifacts"
grep -E '^stat::' "$log" | sed 's/^/  /' || true
if [ $rc -ne 0 ] || [ "$n_crash" -ne 0 ]; then
    tail -40 "$log"
    exit 1
fi
