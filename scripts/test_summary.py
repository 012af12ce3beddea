#!/usr/bin/env python3
"""Sum Criterion's per-suite syntheses from meson's test logs into one line."""
import json, re, sys

passed = failed = skipped = 0
bad = False
args = sys.argv[1:]
dirs, extras = (args[:args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
for e in extras:  # "name: N passed, N failed[, N skipped]" lines of script suites
    m = re.search(r"(\d+) passed, (\d+) failed(?:, (\d+) skipped)?", e)
    if m:
        passed += int(m.group(1))
        failed += int(m.group(2))
        skipped += int(m.group(3) or 0)
for d in dirs:
    try:
        lines = open(f"{d}/meson-logs/testlog.json").read().splitlines()
    except OSError:
        print(f"test_summary: no test log in {d}", file=sys.stderr)
        bad = True
        continue
    for line in lines:
        r = json.loads(line)
        out = (r.get("stdout") or "") + (r.get("stderr") or "")
        m = re.search(r"Synthesis: Tested: (\d+) \| Passing: (\d+) \| Failing: (\d+) \| Crashing: (\d+)", out)
        sk = len(re.findall(r"^\[SKIP\]", out, re.M))
        if m:
            t, p, f, c = map(int, m.groups())
            passed += p
            failed += f + c
            skipped += sk
        elif re.search(r"^[a-z_-]+: \d+ passed, \d+ failed", out, re.M):
            m2 = re.findall(r"^[a-z_-]+: (\d+) passed, (\d+) failed", out, re.M)[-1]
            passed += int(m2[0])
            f = int(m2[1])
            failed += f if (f or r.get("result") == "OK") else 1
        elif r.get("result") == "OK":
            passed += 1
        elif r.get("result") == "SKIP":
            skipped += 1
        else:
            failed += 1
print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
sys.exit(1 if failed or bad else 0)
