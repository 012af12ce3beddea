#!/usr/bin/env bash
# Run the whole test suite: release build, then an ASan+UBSan build.
# Prints a closing "tests: N passed, N failed, N skipped" line.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || { echo "test: dependency install failed" >&2; exit 4; }

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
for s in scripts/interop_llamacpp.sh scripts/interop_prune.sh; do
    [ -x "$s" ] || continue
    log=$(mktemp)
    bash "$s" 2>&1 | tee "$log"
    [ "${PIPESTATUS[0]}" -eq 0 ] || fail=1
    line=$(grep -E '^[a-z_-]+: [0-9]+ passed, [0-9]+ failed' "$log" | tail -1)
    [ -n "$line" ] && extra+=("$line")
    rm -f "$log"
done

python3 scripts/test_summary.py build build-asan -- "${extra[@]}" || fail=1
exit $fail
