#!/usr/bin/env bash
# Run the whole test suite: release build, then an ASan+UBSan build.
# Prints a closing "tests: N passed, N failed, N skipped" line.
set -uo pipefail
cd "$(dirname "$0")/.."
EDGEC_WITH_FUZZ=1 EDGEC_WITH_BROWSER=1 bash scripts/install-deps.sh || { echo "test: dependency install failed" >&2; exit 4; }

export EDGEC_SHARED="${EDGEC_SHARED:-$(cd .. && pwd)/shared}"
fail=0
run_suite() { # builddir, meson setup args...
    local dir=$1; shift
    if [ ! -d "$dir" ]; then
        meson setup "$dir" "$@" >/dev/null || return 1
    fi
    ninja -C "$dir" >/dev/null || { ninja -C "$dir"; return 1; }
    meson test -C "$dir" --print-errorlogs --num-processes 2 || return 1
}
run_suite build || fail=1
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    run_suite build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Db_lundef=false || fail=1

# Script suites: each prints "<name>: N passed, N failed" as its last line
# (or SKIP with a reason, which fails under CI=true).
extra=()
for s in scripts/interop_llamacpp.sh scripts/interop_prune.sh scripts/interop_arch.sh; do
    [ -x "$s" ] || continue
    log=$(mktemp)
    bash "$s" 2>&1 | tee "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail=1
    line=$(grep -E '^[a-z_-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    [ -n "$line" ] && extra+=("$line")
    rm -f "$log"
done

# Fuzzing: every libFuzzer target for EDGEC_FUZZ_SECONDS (default 60) each, two
# at a time; a crash, hang or leak fails the run and names the reproducer.
if command -v clang >/dev/null && [ "${EDGEC_FUZZ_SECONDS:-60}" -gt 0 ]; then
    fz_targets=$(sed -n 's/^all_targets="\(.*\)"$/\1/p' scripts/fuzz.sh)
    if [ ! -f build-fuzz/build.ninja ]; then
        CC=clang meson setup build-fuzz -Dfuzz=true -Dopenmp=disabled -Db_sanitize=address,undefined \
            -Db_lundef=false -Dbuildtype=debugoptimized >/dev/null || fail=1
    fi
    fz_log=$(mktemp)
    # shellcheck disable=SC2046
    if ! ninja -C build-fuzz $(for t in $fz_targets; do echo "tests/fuzz/fuzz_$t"; done) >"$fz_log" 2>&1; then
        echo "fuzz: building the targets with clang FAILED:"
        grep -E 'error|FAILED' "$fz_log" | head -20 | sed 's/^/  /'
        fail=1
    fi
    rm -f "$fz_log"
    fz_dir=$(mktemp -d)
    fuzz_one() { # target: output to $fz_dir/target, exit status to $fz_dir/target.rc
        EDGEC_FUZZ_NOBUILD=1 bash scripts/fuzz.sh "$1" "${EDGEC_FUZZ_SECONDS:-60}" >"$fz_dir/$1" 2>&1
        echo $? >"$fz_dir/$1.rc"
    }
    set -- $fz_targets
    while [ $# -gt 0 ]; do
        fuzz_one "$1" &
        p1=$!; p2=""
        if [ $# -gt 1 ]; then fuzz_one "$2" & p2=$!; fi
        wait $p1
        [ -n "$p2" ] && wait $p2
        shift; [ $# -gt 0 ] && shift
    done
    n_t=0; execs=0; crashes=0
    for t in $fz_targets; do
        line=$(grep -E "^fuzz $t: [0-9]+ runs" "$fz_dir/$t")
        rc=$(cat "$fz_dir/$t.rc" 2>/dev/null || echo 255)
        if [ -z "$line" ] || [ "$rc" != 0 ]; then
            # a crash, or the script stopped before fuzzing: show all it printed
            echo "fuzz $t: FAILED (exit $rc); its output:"
            sed 's/^/  /' "$fz_dir/$t"
            fail=1
            # not counted as a target that ran; its crash artifacts are
            [ -n "$line" ] && crashes=$((crashes + $(echo "$line" |
                sed -n 's/.*, \([0-9]*\) crash\/timeout\/leak artifacts/\1/p')))
            continue
        else
            grep -E "^fuzz $t: note:" "$fz_dir/$t"
            echo "$line"
        fi
        n_t=$((n_t + 1))
        execs=$((execs + $(echo "$line" | sed -n 's/^fuzz [a-z_]*: \([0-9]*\) runs.*/\1/p')))
        crashes=$((crashes + $(echo "$line" | sed -n 's/.*, \([0-9]*\) crash\/timeout\/leak artifacts/\1/p')))
    done
    n_all=$(echo $fz_targets | wc -w)
    extra+=("fuzz: $n_t of $n_all targets ran, $execs execs, $crashes crashes")
    echo "fuzz: $n_t of $n_all targets ran, $execs execs, $crashes crashes"
    rm -rf "$fz_dir"
elif [ "${CI:-}" = true ]; then
    echo "fuzz: clang missing under CI=true" >&2
    fail=1
fi

python3 scripts/test_summary.py build build-asan -- "${extra[@]}" || fail=1
exit $fail
