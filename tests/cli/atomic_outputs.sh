#!/usr/bin/env bash
# Outputs are atomic: killed runs leave either nothing or a complete file, and
# a write that runs out of space fails with exit code 4 and leaves nothing.
#
# Usage: atomic_outputs.sh EDGEC GENMODEL      (run by meson test)
# Prints "atomic: N passed, N failed".
set -uo pipefail
edgec=$1
gen=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-atomic-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

# A model big enough that convert/quantize take a noticeable time (~100 MB F32).
"$gen" "$work/model" --hidden 512 --ffn 1536 --layers 8 --heads 8 --kv-heads 4 --vocab 4096 --seed 3 >/dev/null ||
    { echo "atomic: cannot generate the model"; exit 1; }

cmds=("convert|$edgec convert $work/model -o $work/out.gguf --outtype f16 -q")
if grep -q '^  quantize ' <<<"$("$edgec" help)"; then
    cmds+=("quantize|$edgec quantize $work/model -o $work/out.gguf --type Q4_K_M -q")
fi

# Time one full run of each command to spread the kill moments over it.
RANDOM=42
for entry in "${cmds[@]}"; do
    name=${entry%%|*}
    cmd=${entry#*|}
    rm -f "$work"/out.gguf*
    t0=$(date +%s%N)
    $cmd || bad "$name: reference run failed"
    t1=$(date +%s%N)
    full_ms=$(( (t1 - t0) / 1000000 ))
    [ $full_ms -lt 20 ] && full_ms=20
    ref_sum=$(sha256sum "$work/out.gguf" | cut -d' ' -f1)
    for i in $(seq 1 20); do
        rm -f "$work"/out.gguf*
        delay_ms=$(( RANDOM % (full_ms + full_ms / 4) ))
        $cmd &
        pid=$!
        sleep "$(printf '0.%03d' "$delay_ms")" 2>/dev/null || sleep 0
        [ "$delay_ms" -ge 1000 ] && sleep $((delay_ms / 1000))
        kill -KILL $pid 2>/dev/null
        wait $pid 2>/dev/null
        if [ -e "$work/out.gguf" ]; then
            # complete file: inspect accepts it and it equals the reference
            if "$edgec" inspect "$work/out.gguf" >/dev/null 2>&1 &&
                [ "$(sha256sum "$work/out.gguf" | cut -d' ' -f1)" = "$ref_sum" ]; then
                ok
            else
                bad "$name kill $i at ${delay_ms} ms: destination exists but is not the complete file"
            fi
        else
            ok # absent is fine (a leftover .tmp- file from SIGKILL cannot be cleaned by the process)
        fi
    done
    echo "$name: 20 SIGKILLs over a ${full_ms} ms run checked"

    # Too little space: a file-size limit below the output size.
    rm -f "$work"/out.gguf*
    ( ulimit -f 2048; exec $cmd ) 2>"$work/err.txt"
    rc=$?
    if [ $rc -eq 4 ] && [ ! -e "$work/out.gguf" ] && ! ls "$work"/out.gguf.tmp-* >/dev/null 2>&1 &&
        grep -q "out.gguf" "$work/err.txt"; then
        ok
    else
        bad "$name with ulimit -f: exit $rc, files: $(ls "$work" | tr '\n' ' '), stderr: $(head -c 300 "$work/err.txt")"
    fi
    echo "$name under 'ulimit -f 2048': exit $rc, stderr: $(head -c 200 "$work/err.txt")"

    # SIGINT/SIGTERM remove the temporary file.
    for sig in INT TERM; do
        rm -f "$work"/out.gguf*
        $cmd &
        pid=$!
        sleep "$(printf '0.%03d' $(( full_ms / 3 % 1000 )))"
        kill -$sig $pid 2>/dev/null
        wait $pid 2>/dev/null
        if ls "$work"/out.gguf.tmp-* >/dev/null 2>&1; then
            bad "$name SIG$sig left a temporary file"
        else
            ok
        fi
    done
done
echo "atomic: $pass passed, $fail failed"
[ $fail -eq 0 ]
