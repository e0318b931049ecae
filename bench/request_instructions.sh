#!/usr/bin/env bash
# Instructions per proxied request of ingressd's own work (bench/request_cost.py), counted by
# callgrind: the difference between 2,000 and 12,000 requests, divided by 10,000. Unlike times,
# instruction counts do not move with other load on the machine, so two trees can be compared:
#   bash bench/request_instructions.sh [TREE] [request_cost.py options, e.g. --access-log]
set -euo pipefail
tree="$(cd "${1:-$(dirname "$0")/..}" && pwd)"; shift || true
count() {
  local n="$1"; shift
  INGRESSD_TREE="$tree" valgrind --tool=callgrind --callgrind-out-file=/dev/null "$python" "$script" \
    --once --requests "$n" "$@" 2>&1 | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
python="$(python3 -c "import sys; print(sys.executable)")"  # the interpreter itself, not a shim
script="$(cd "$(dirname "$0")" && pwd)/request_cost.py"
cd "$tree"
small=$(count 2000 "$@"); large=$(count 12000 "$@")
echo "instructions per request: $(( (large - small) / 10000 ))  ($tree $*)"
