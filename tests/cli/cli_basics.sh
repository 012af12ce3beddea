#!/usr/bin/env bash
# The CLI contract: help/version on stdout with exit 0, documented exit codes,
# and `edgec inspect` (text and --json) on every shared model folder and file
# and on every kind of file edgec writes.
# Usage: cli_basics.sh EDGEC [SHARED]      Prints "cli: N passed, N failed".
set -uo pipefail
edgec=$1
shared=${2:-${EDGEC_SHARED:-${EDGEC_SOURCE_ROOT:+$EDGEC_SOURCE_ROOT/../shared}}}
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-cli-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
expect() { # expected_exit description command...
    local want=$1 what=$2
    shift 2
    "$@" >"$work/out" 2>"$work/err"
    local rc=$?
    if [ $rc -eq "$want" ]; then
        pass=$((pass + 1))
    else
        fail=$((fail + 1))
        echo "FAIL: $what: exit $rc, wanted $want; stderr: $(head -c 300 "$work/err")"
    fi
}
json_ok() { python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$work/out" 2>/dev/null; }

expect 0 "--version" "$edgec" --version
grep -q '^edgec [0-9]' "$work/out" || { fail=$((fail + 1)); echo "FAIL: --version output"; }
expect 0 "help" "$edgec" help
grep -q 'Exit codes' "$work/out" || { fail=$((fail + 1)); echo "FAIL: help lists no exit codes"; }
cmds=$("$edgec" help | awk '/^Commands:/ {on=1; next} on && /^  [a-z]/ {print $1} on && /^$/ {exit}')
for c in $cmds; do
    [ "$c" = help ] && continue
    expect 0 "$c --help" "$edgec" "$c" --help
    grep -q '^Usage: ' "$work/out" || { fail=$((fail + 1)); echo "FAIL: $c --help prints no usage on stdout"; }
done
expect 2 "no arguments" "$edgec"
expect 2 "unknown command" "$edgec" frobnicate
expect 2 "unknown option" "$edgec" inspect --no-such-option x
expect 4 "missing input" "$edgec" inspect "$work/does-not-exist.gguf"
printf 'GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\x7f\x00\x00\x00\x00\x00\x00\x00\x00' >"$work/bad.gguf"
expect 3 "malformed gguf" "$edgec" inspect "$work/bad.gguf"
grep -q 'bad.gguf' "$work/err" && grep -qi 'byte' "$work/err" ||
    { fail=$((fail + 1)); echo "FAIL: malformed-file message lacks file or offset: $(cat "$work/err")"; }

if [ -z "$shared" ] || [ ! -d "$shared/models" ]; then
    if [ "${CI:-}" = true ]; then
        echo "FAIL: shared test material missing under CI=true"
        fail=$((fail + 1))
    else
        echo "cli: SKIP inspect of shared models: set EDGEC_SHARED"
    fi
else
    for m in "$shared"/models/*/; do
        [ -f "$m/config.json" ] || continue
        for p in "$m" "$m/model-f16" "$m/model-bf16" "$m/model.safetensors"; do
            [ -e "$p" ] || continue
            expect 0 "inspect $p" "$edgec" inspect "$p"
            expect 0 "inspect --json $p" "$edgec" inspect --json "$p"
            json_ok || { fail=$((fail + 1)); echo "FAIL: inspect --json $p is not JSON"; }
        done
        name=$(basename "$m")
        outs=()
        for t in f32 f16 bf16; do
            expect 0 "convert $name $t" "$edgec" convert "$m" -o "$work/$name-$t.gguf" --outtype $t -q
            outs+=("$work/$name-$t.gguf")
        done
        if grep -q '^  quantize ' <<<"$("$edgec" help)"; then
            for q in Q8_0 Q4_K_M Q2_K IQ4_NL; do
                expect 0 "quantize $name $q" "$edgec" quantize "$m" -o "$work/$name-$q.gguf" --type $q -q
                outs+=("$work/$name-$q.gguf")
            done
        fi
        for o in "${outs[@]}"; do
            expect 0 "inspect $o" "$edgec" inspect "$o"
            expect 0 "inspect --json $o" "$edgec" inspect --json "$o"
            json_ok || { fail=$((fail + 1)); echo "FAIL: inspect --json $o is not JSON"; }
        done
    done
fi
echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
