#!/usr/bin/env bash
# Run test suites under valgrind (memcheck, definite leaks are errors).
# Usage: scripts/valgrind.sh [BUILD_DIR] [SUITE...]   (default: every suite but the slow
# engine-driven ones, which take tens of minutes under valgrind)
# Prints "valgrind: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(core gguf safetensors malformed tokenize vocab hf_config convert \
    quant_golden quant_props quant_plan imatrix prune_golden linalg validate)
export EDGEC_SHARED="${EDGEC_SHARED:-$(cd .. && pwd)/shared}"
pass=0
fail=0
for t in "${suites[@]}"; do
    log=$(mktemp)
    if valgrind --trace-children=yes --leak-check=full --errors-for-leak-kinds=definite \
        --error-exitcode=9 -q "$build/tests/test_$t" --jobs 1 >"$log" 2>&1; then
        pass=$((pass + 1))
        echo "ok   $t: $(grep -h Synthesis "$log" | sed 's/.*Synthesis: //')"
    else
        fail=$((fail + 1))
        echo "FAIL $t (log: $log)"
        continue
    fi
    rm -f "$log"
done
echo "valgrind: $pass passed, $fail failed"
[ $fail -eq 0 ]
