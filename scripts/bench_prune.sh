#!/usr/bin/env bash
# Benchmark SparseGPT on one linear layer (tests/tools/bench_prune.c) and print
# the figures beside the authors' PyTorch on this 2-core machine (issue 5).
#
# Shapes are rows x cols = out_features x in_features (PyTorch nn.Linear
# layout); the Hessian is cols x cols, so "2048x5632" is a TinyLlama-style
# down_proj with 5632 inputs. Calibration: NSAMPLES x SEQLEN random tokens
# (fixed seed), default 128 x 2048.
#
# Usage: scripts/bench_prune.sh [BUILD_DIR]
#   EDGEC_BENCH_SHAPES="768x768 2048x5632"  EDGEC_BENCH_TOKENS="128x2048"
#   OMP_NUM_THREADS (default: all cores)
#
# Measured 2026-12-06 (commit 4422d15, 2-core Intel Xeon VM with AVX-512, nothing else running):
#   768x768:   hessian 0.86 s, prune 0.031 s, total 0.89 s   torch 5.1 / 0.11  (5.7x)
#   2048x5632: hessian 39.6 s (210 GFLOP/s), prune 2.11 s, total 41.7 s
#                                                             torch 137 / 6.1   (3.3x)
#   rel. reconstruction error (50 %): 0.0700 / 0.0762 (magnitude 0.0828 / 0.0785)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shapes=${EDGEC_BENCH_SHAPES:-768x768 2048x5632}
tokens=${EDGEC_BENCH_TOKENS:-128x2048}
if [ ! -d "$build" ]; then
    meson setup "$build" -Dbuildtype=release >/dev/null
fi
ninja -C "$build" -j2 tests/bench_prune >/dev/null
bench="$build/tests/bench_prune"
nsamples=${tokens%x*}
seqlen=${tokens#*x}

# reference: the authors' code (torch, 2 cores) as quoted in the issue
ref_total() { case $1 in 768x768) echo 5.1 ;; 2048x5632) echo 137 ;; *) echo "-" ;; esac; }
ref_prune() { case $1 in 768x768) echo 0.11 ;; 2048x5632) echo 6.1 ;; *) echo "-" ;; esac; }

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
results=()
for shape in $shapes; do
    rows=${shape%x*}
    cols=${shape#*x}
    echo
    out=$("$bench" "$rows" "$cols" "$nsamples" "$seqlen")
    echo "$out"
    results+=("$shape $(echo "$out" | grep '^RESULT')")
done
echo
printf '%-10s %12s %12s %12s %14s %14s %9s %9s\n' layer hessian_s prune_s total_s torch_total_s torch_prune_s relerr relerr24
for r in "${results[@]}"; do
    shape=${r%% *}
    get() { echo "$r" | tr ' ' '\n' | awk -F= -v k="$1" '$1 == k {print $2}'; }
    printf '%-10s %12s %12s %12s %14s %14s %9s %9s\n' "$shape" "$(get hessian_s)" "$(get prune_s)" \
        "$(get total_s)" "$(ref_total "$shape")" "$(ref_prune "$shape")" "$(get relerr)" "$(get relerr24)"
done
