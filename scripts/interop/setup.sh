# Sourced by scripts/interop_*.sh (from the project root) after setting
# interop_name. skip REASON prints "<name>: SKIP: REASON" and exits 0, or 1
# under CI=true; need_node_llama_cpp skips without node/npm and installs
# node-llama-cpp into scripts/interop/node_modules when it is not there.
skip() {
    echo "$interop_name: SKIP: $*"
    if [ "${CI:-}" = "true" ]; then
        echo "$interop_name: failing because CI=true" >&2
        exit 1
    fi
    exit 0
}

need_node_llama_cpp() {
    command -v node >/dev/null && command -v npm >/dev/null || skip "node/npm not installed"
    [ -d scripts/interop/node_modules/node-llama-cpp ] && return 0
    # NODE_LLAMA_CPP_SKIP_DOWNLOAD: the postinstall step must not fetch or
    # build llama.cpp; the prebuilt @node-llama-cpp/linux-x64 package is used.
    # `npm ci` refuses this lock file under npm 11 (optional platform packages),
    # `npm install` honours the lock and works.
    (cd scripts/interop && NODE_LLAMA_CPP_SKIP_DOWNLOAD=true npm install --no-audit --no-fund \
        --ignore-scripts >/tmp/edgec-interop-npm.log 2>&1) ||
        skip "npm install failed (see /tmp/edgec-interop-npm.log)"
}
