#!/usr/bin/env bash
# A sparse TinyLlama-shaped (24 layers) F32 checkpoint (4.8 GB, tensors past the 4 GiB
# offset) converts and inspects correctly: every tensor's first and last
# element (markers written by edgec-genmodel --sparse) arrive in the GGUF at
# the offsets inspect reports. Converts to F32 (output tensors past 4 GiB too)
# when the disk has room, else to F16.
# Usage: large_offsets.sh EDGEC GENMODEL     Prints "large: N passed, N failed".
set -uo pipefail
edgec=$1
gen=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/edgec-large-XXXXXX")
trap 'rm -rf "$work"' EXIT
free_kb=$(df -Pk "$work" | awk 'NR==2 {print $4}')
if [ "$free_kb" -lt $((3 * 1024 * 1024)) ]; then
    echo "large: SKIP: only $((free_kb / 1024)) MiB free in $work (needs 3 GiB for the F16 output)"
    echo "large: 0 passed, 0 failed, 1 skipped"
    exit 0
fi
outtype=f16
[ "$free_kb" -ge $((12 * 1024 * 1024)) ] && outtype=f32
"$gen" "$work/m" --hidden 2048 --ffn 5632 --layers 24 --heads 32 --kv-heads 4 --vocab 32000 \
    --sparse >/dev/null || { echo "large: 0 passed, 1 failed (genmodel)"; exit 1; }
"$edgec" inspect "$work/m" --json >"$work/src.json" || { echo "large: 0 passed, 1 failed (inspect src)"; exit 1; }
t0=$(date +%s.%N)
"$edgec" convert "$work/m" -o "$work/out.gguf" --outtype $outtype -q ||
    { echo "large: 0 passed, 1 failed (convert)"; exit 1; }
t1=$(date +%s.%N)
"$edgec" inspect "$work/out.gguf" --json >"$work/dst.json" || { echo "large: 0 passed, 1 failed (inspect gguf)"; exit 1; }
python3 - "$work" "$outtype" "$t0" "$t1" <<'PY'
import json, struct, sys
work, outtype, t0, t1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
src = json.load(open(f"{work}/src.json"))
dst = {t["name"]: t for t in json.load(open(f"{work}/dst.json"))["tensors"]}
f_src = open(f"{work}/m/model.safetensors", "rb")
f_dst = open(f"{work}/out.gguf", "rb")
def elem(f, off, typ):
    f.seek(off)
    if typ == "F32":
        return struct.unpack("<f", f.read(4))[0]
    if typ == "F16":
        return struct.unpack("<e", f.read(2))[0]
    raise SystemExit(f"unexpected type {typ}")
passed = failed = 0
past = 0
for t in src["tensors"]:
    d = dst.get(t["name"])
    if d is None:
        failed += 1; print("missing in gguf:", t["name"]); continue
    esz_s, esz_d = 4, (4 if d["type"] == "F32" else 2)
    first_s = elem(f_src, t["offset"], "F32"); last_s = elem(f_src, t["offset"] + t["bytes"] - 4, "F32")
    first_d = elem(f_dst, d["offset"], d["type"]); last_d = elem(f_dst, d["offset"] + d["bytes"] - esz_d, d["type"])
    past += t["offset"] >= 4 << 30
    if (first_s, last_s) == (first_d, last_d) and first_s == -last_s and first_s >= 1 and d["shape"] == t["shape"]:
        passed += 1
    else:
        failed += 1
        print(f"mismatch {t['name']}: src {first_s},{last_s} @{t['offset']} gguf {first_d},{last_d} @{d['offset']}")
dpast = sum(1 for d in dst.values() if d["offset"] >= 4 << 30)
print(f"{len(src['tensors'])} tensors, {past} of them past 4 GiB in the checkpoint, {dpast} past 4 GiB in the {outtype} GGUF; convert took {t1 - t0:.1f} s")
if past == 0:
    failed += 1; print("no tensor past 4 GiB: the test checks nothing")
print(f"large: {passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
PY
