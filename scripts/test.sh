#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs the whole suite.
# Usage: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

# kubernetes-client is Debian's kubectl (1.20); any kubectl already on PATH (a newer build) will do
debian_packages=(curl openssl chromium pebble kubernetes-client nghttp2-client)  # nghttp2-client: nghttp in test_h2_configmap
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  missing=()
  for pkg in "${debian_packages[@]}"; do
    if [ "$pkg" = kubernetes-client ] && command -v kubectl >/dev/null 2>&1; then continue; fi
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
fi

# Real configurable-http-proxy for tests/integration/test_chp_compare.py (which skips only without npm),
# in the benchmark's npm prefix; never put on PATH (ingressd installs its own configurable-http-proxy).
npm_prefix="${INGRESSD_BENCH_CACHE:-$HOME/.cache/ingressd-bench}/npm"
if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null \
    || echo "scripts/test.sh: could not install nodejs and npm (the CHP comparison will be skipped)" >&2
fi
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && [ ! -e "$npm_prefix/node_modules/configurable-http-proxy/bin/configurable-http-proxy" ]; then
  mkdir -p "$npm_prefix"
  npm install --silent --no-audit --no-fund --prefix "$npm_prefix" configurable-http-proxy@5.3.0 >/dev/null \
    || echo "scripts/test.sh: npm could not install configurable-http-proxy into $npm_prefix" >&2
fi

python3 -m pip install -q --disable-pip-version-check -e ".[test]"
exec python3 -m pytest -n 2 -q -p no:cacheprovider "$@"
