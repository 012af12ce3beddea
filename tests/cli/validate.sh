#!/usr/bin/env bash
# edgec validate end to end on stories-student-256 and the held-out text:
#  - the same thresholds pass a Q8_0 file and fail a Q2_K file (exit 0 / 1, the
#    failed check named);
#  - the JSON, Markdown and HTML reports are written and the JSON has its keys;
#  - the KL-divergence statistics equal llama-perplexity --kl-divergence's
#    (../shared/golden/perplexity/<M>.json) within 2 % relative (mean and median
#    and 99th-percentile KLD, same top-1, RMS delta p, PPL; the maximum is
#    printed, not gated), and the paired ln(PPL(Q)/PPL(base)), its standard
#    error and the PPL ratio's within 2 % of that error. In a sanitizer
#    build (EDGEC_SANITIZED=1) the run is cut to 20 chunks and compared with
#    llama.cpp's running values after chunk 20 (2 with EDGEC_TEST_SMALL=1,
#    for valgrind);
#  - the HTML renders in headless Chromium (screenshot kept in the build dir);
#  - edgec generate is deterministic for a seed and greedy at --temp 0.
#
# Usage: validate.sh EDGEC SOURCE_ROOT ARTIFACT_DIR
# Prints "validate: N passed, N failed".
set -uo pipefail
edgec=$1
src=$2
artifacts=${3:-.}
shared=${EDGEC_SHARED:-$src/../shared}
model=$shared/models/stories-student-256
text=$shared/data/tinystories_heldout.txt
golden=$shared/golden/perplexity/stories-student-256.json
if [ ! -d "$model" ] || [ ! -f "$text" ] || [ ! -f "$golden" ]; then
    if [ "${CI:-}" = true ]; then
        echo "validate: shared material missing under CI=true ($shared)"
        exit 1
    fi
    echo "validate: skipped (no $model; set EDGEC_SHARED)"
    exit 77
fi
py=""
for cand in python3 /usr/bin/python3; do
    if command -v "$cand" >/dev/null; then py=$cand; break; fi
done
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-validate-XXXXXX")
trap 'rm -rf "$work"' EXIT
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

chunks=0
[ "${EDGEC_SANITIZED:-0}" = 1 ] && chunks=20
# EDGEC_TEST_SMALL=1 (scripts/valgrind.sh's CLI runs): 2 chunks, compared with
# llama.cpp's running values after chunk 2
[ "${EDGEC_TEST_SMALL:-0}" = 1 ] && chunks=2
gate=(--max-kld 0.01 --max-ppl-ratio 1.01 --min-top1 0.95)

"$edgec" convert "$model" -o "$work/f32.gguf" --outtype f32 -q || bad "convert"
for t in Q8_0 Q2_K Q4_K_M; do
    "$edgec" quantize "$model" -o "$work/$t.gguf" --type "$t" -q || bad "quantize $t"
done

# (1) the gate: Q8_0 passes, Q2_K fails, under the same thresholds; REF is the
# HF folder for Q8_0 (tensors matched across naming) and the F32 GGUF for Q2_K
"$edgec" validate "$model" "$work/Q8_0.gguf" --text "$text" --ctx 128 --chunks $chunks "${gate[@]}" \
    --route-target 0.99 --report "$work/q8.json" --report "$work/q8.md" --report "$work/q8.html" \
    -q >"$work/q8.txt" 2>"$work/q8.err"
rc=$?
cat "$work/q8.txt"
if [ $rc -eq 0 ] && grep -q '^PASSED' "$work/q8.txt"; then ok; else bad "Q8_0: exit $rc, expected 0"; fi
"$edgec" validate "$work/f32.gguf" "$work/Q2_K.gguf" --text "$text" --ctx 128 --chunks $chunks \
    "${gate[@]}" --json -q >"$work/q2.json" 2>"$work/q2.err"
rc=$?
if [ $rc -eq 1 ] && grep -q 'kld_mean = .*FAIL' "$work/q2.err"; then ok; else
    bad "Q2_K: exit $rc, expected 1 with kld_mean named: $(head -c 300 "$work/q2.err")"; fi
echo "Q2_K: exit $rc; $(grep FAIL "$work/q2.err" | tr '\n' ' ')"

# (2) reports
for ext in json md html; do
    if [ -s "$work/q8.$ext" ]; then ok; else bad "report q8.$ext missing"; fi
done
ls "$work" | grep -q '\.tmp-' && bad "temporary report files left behind"
grep -q '<svg' "$work/q8.html" && ! grep -q '<script' "$work/q8.html" && ok || bad "HTML not self-contained SVG"
grep -q 'PASSED' "$work/q8.md" && ok || bad "Markdown lacks the verdict"

if [ -n "$py" ]; then
    # (3) JSON keys, and our statistics against llama.cpp's printed ones
    "$edgec" validate "$work/f32.gguf" "$work/Q4_K_M.gguf" --text "$text" --ctx 128 --chunks $chunks \
        --no-tensors --json -q >"$work/q4.json" 2>/dev/null
    "$edgec" validate "$work/f32.gguf" "$work/Q8_0.gguf" --text "$text" --ctx 128 --chunks $chunks \
        --no-tensors --json -q >"$work/q8s.json" 2>/dev/null
    out=$("$py" - "$golden" "$work" "$chunks" <<'PY'
import json, sys
golden, work, chunks = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
q8 = json.load(open(work + "/q8.json"))
need = ["ppl_ref", "ppl_cand", "ppl_ratio", "ppl_ratio_err", "kld_mean", "kld_median", "kld_p99", "kld_max",
        "top1_agreement", "rms_dp", "passed", "checks", "tensors", "routing"]
missing = [k for k in need if k not in q8]
print("json keys:", "ok" if not missing else "MISSING " + ",".join(missing))
print("tensors compared:", len(q8["tensors"]), "recommended tau:", q8["routing"]["recommended_tau"])
fails = 0 if not missing and len(q8["tensors"]) > 0 else 1
def summary(t):
    return {s["key"].replace(" ", ""): s["values"] for s in golden["kld"][t]["summary"]}
for t, f in (("Q4_K_M", "q4.json"), ("Q2_K", "q2.json"), ("Q8_0", "q8s.json")):
    ours = json.load(open(work + "/" + f))
    if chunks:
        cols = golden["kld"][t]["per_chunk_running"]["columns"]
        row = dict(zip(cols, golden["kld"][t]["per_chunk_running"]["rows"][chunks - 1]))
        pairs = [("kld_mean", ours["kld_mean"], row["kld"]),
                 ("top1", 100 * ours["top1_agreement"], row["same_top_p_pct"]),
                 ("rms_dp", 100 * ours["rms_dp"], row["dp_rms_pct"])]
        if t == "Q8_0":  # KLD printed with one digit at chunk 20; RMS dp of 1260
            pairs = pairs[1:2]  # tokens has a 6 % standard error (0.254 +/- 0.016)
        elif chunks < 20:  # RMS dp of 126 tokens: ~20 % standard error; printed only
            a, b = pairs[2][1], pairs[2][2]
            print(f"{t} rms_dp: ours {a:.6g} llama.cpp {b:.6g} rel {abs(a - b) / b:.4f} (not gated at {chunks} chunks)")
            pairs = pairs[:2]
    else:
        s = summary(t)
        pairs = [("kld_mean", ours["kld_mean"], s["MeanKLD"][0]),
                 ("kld_median", ours["kld_median"], s["MedianKLD"][0]),
                 ("top1", 100 * ours["top1_agreement"], s["Sametopp"][0]),
                 ("rms_dp", 100 * ours["rms_dp"], s["RMSΔp"][0]),
                 ("ppl_cand", ours["ppl_cand"], s["MeanPPL(Q)"][0])]
        # the maximum is one token's extreme: reported, not gated (measured 1-10 %)
        pairs.append(("kld_p99", ours["kld_p99"], s["99.0%KLD"][0]))
        for name, key in (("kld_max", "MaximumKLD"),):
            a, b = ours[name], s[key][0]
            print(f"{t} {name}: ours {a:.6g} llama.cpp {b:.6g} rel {abs(a - b) / b:.4f} (not gated)")
    for name, a, b in pairs:
        rel = abs(a - b) / abs(b) if b else abs(a - b)
        flag = "ok" if rel <= 0.02 else "FAIL"
        fails += flag == "FAIL"
        print(f"{t} {name}: ours {a:.6g} llama.cpp {b:.6g} rel {rel:.4f} {flag}")
    # the paired statistics: ln(PPL(Q)/PPL(base)) and its standard error sigma,
    # and the PPL ratio's, each within 2 % of sigma plus half the last printed
    # digit (6 decimals in the summary, 5 per chunk). (Before the engine took
    # llama.cpp's Q2_K/Q3_K dots the Q2_K ln ratio was 2.5 % of sigma off.)
    lc = ours["llama_cpp"]
    if chunks:
        ln, ln_err, r_err, half = row["ln_ppl_ratio"], row["ln_ppl_ratio_pm"], None, 5e-6
    else:
        (ln, ln_err), (_, r_err), half = s["Meanln(PPL(Q)/PPL(base))"], s["MeanPPL(Q)/PPL(base)"], 5e-7
    paired = [("ln_ppl_ratio", lc["mean_ln_ppl_ratio"], ln, 0.02 * ln_err),
              ("ln_ppl_ratio_err", lc["mean_ln_ppl_ratio_err"], ln_err, 0.02 * ln_err)]
    if r_err is not None:
        paired.append(("ppl_ratio_err", ours["ppl_ratio_err"], r_err, 0.02 * r_err))
    for name, a, b, unit in paired:
        tol = unit + half
        flag = "ok" if abs(a - b) <= tol else "FAIL"
        fails += flag == "FAIL"
        print(f"{t} {name}: ours {a:.6g} llama.cpp {b:.6g} |diff| {abs(a - b):.2g} tol {tol:.2g} {flag}")
print("golden_fails", fails)
PY
)
    echo "$out"
    if echo "$out" | grep -q '^golden_fails 0$'; then ok; else bad "statistics differ from llama.cpp's"; fi
else
    [ "${CI:-}" = true ] && bad "no python3 under CI=true" || echo "golden comparison: skipped (no python3)"
fi

# (4) the HTML in headless Chromium
chrome=""
for c in chromium chromium-browser google-chrome; do
    if command -v "$c" >/dev/null; then chrome=$c; break; fi
done
if [ -n "$chrome" ]; then
    mkdir -p "$artifacts"
    shot=$artifacts/validate-report.png
    rm -f "$shot"
    timeout 120 "$chrome" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --window-size=1000,2200 --screenshot="$shot" "file://$work/q8.html" >/dev/null 2>&1
    size=$(stat -c %s "$shot" 2>/dev/null || echo 0)
    if [ "$size" -gt 20000 ]; then ok; echo "screenshot: $shot ($size bytes)"; else
        bad "chromium screenshot missing or blank ($size bytes)"; fi
elif [ "${CI:-}" = true ]; then
    bad "chromium not installed under CI=true (scripts/install-deps.sh installs it)"
else
    echo "chromium: skipped (not installed)"
fi

# (5) generate: greedy is repeatable, a seed fixes the sample
g1=$("$edgec" generate "$model" -p "Once upon a time" -n 24 -q)
g2=$("$edgec" generate "$model" -p "Once upon a time" -n 24 -q)
s1=$("$edgec" generate "$model" -p "Once upon a time" -n 24 --temp 0.9 --seed 7 -q)
s2=$("$edgec" generate "$model" -p "Once upon a time" -n 24 --temp 0.9 --seed 7 -q)
echo "greedy: $g1"
echo "sampled: $s1"
[ -n "$g1" ] && [ "$g1" = "$g2" ] && [ "${g1#Once upon a time}" != "$g1" ] && [ ${#g1} -gt 30 ] && ok ||
    bad "greedy generation not repeatable or empty"
[ -n "$s1" ] && [ "$s1" = "$s2" ] && ok || bad "seeded sampling not repeatable"

echo "validate: $pass passed, $fail failed"
[ $fail -eq 0 ]
