#!/usr/bin/env bash
# Run the Criterion suites under valgrind (memcheck; definite leaks are errors).
# Usage: scripts/valgrind.sh [BUILD_DIR] [SUITE...]
#   BUILD_DIR defaults to build-vg, configured here when absent: optimised with
#   debug info, OpenMP on, and -DEC_TIMEOUT_SCALE=100 so that the per-test
#   Criterion timeouts (there to catch hangs) do not fire at valgrind's speed.
#   SUITE defaults to every test_* executable in BUILD_DIR/tests (the whole
#   Criterion suite; the engine-driven ones take tens of minutes each).
# Tests run one at a time (--jobs 1), OMP_NUM_THREADS=2 unless set.
# valgrind emulates no AVX-512, so under it the CPU probes report AVX2 at most
# and the AVX-512 cases skip (they run in the release and ASan builds).
# For the command-line suites, pass a wrapper as their EDGEC argument, e.g.
#   printf '#!/bin/sh\nexport OMP_WAIT_POLICY=passive\nexec valgrind -q --error-exitcode=99 \
#     --log-file=/tmp/vg.%%p.log build-vg/edgec "$@"\n' > /tmp/vg-edgec
# (OMP_WAIT_POLICY set: edgec otherwise re-executes itself, which valgrind refuses),
# and EDGEC_TEST_SMALL=1 for distill.sh and validate.sh: every step, fewer tokens
# (the engine runs at ~6 tokens/s under valgrind), e.g.
#   EDGEC_TEST_SMALL=1 bash tests/cli/validate.sh /tmp/vg-edgec . /tmp/art
# Prints "valgrind: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-vg}
shift || true
if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" -Dbuildtype=debugoptimized -Dc_args=-DEC_TIMEOUT_SCALE=100 >/dev/null ||
        exit 4
fi
ninja -C "$build" >/dev/null || { ninja -C "$build"; exit 4; }
suites=("$@")
if [ ${#suites[@]} -eq 0 ]; then
    for t in "$build"/tests/test_*; do
        [ -f "$t" ] && [ -x "$t" ] && suites+=("${t##*/test_}")
    done
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export EDGEC_SHARED="${EDGEC_SHARED:-$(cd .. && pwd)/shared}"
pass=0
fail=0
for t in "${suites[@]}"; do
    log=$(mktemp)
    if valgrind --trace-children=yes --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=9 -q "$build/tests/test_$t" --jobs 1 >"$log" 2>&1; then
        pass=$((pass + 1))
        echo "ok   $t: $(grep -h Synthesis "$log" | sed 's/.*Synthesis: //') ($(date -u +%H:%M))"
    else
        fail=$((fail + 1))
        echo "FAIL $t (log: $log)"
        continue
    fi
    rm -f "$log"
done
echo "valgrind: $pass passed, $fail failed"
[ $fail -eq 0 ]
