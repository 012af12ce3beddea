#!/usr/bin/env bash
# Install what edgec needs from Debian's packages (idempotent; skips what is present).
set -euo pipefail
pkgs=(meson ninja-build pkg-config libcjson-dev zlib1g-dev libcriterion-dev gcc python3 python3-numpy)
[ "${EDGEC_WITH_FUZZ:-0}" = 1 ] && pkgs+=(clang libclang-rt-14-dev)
# headless browser for the HTML report test (tests/cli/validate.sh)
[ "${EDGEC_WITH_BROWSER:-0}" = 1 ] && pkgs+=(chromium)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi
echo "install-deps: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
