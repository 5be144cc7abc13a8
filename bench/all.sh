#!/usr/bin/env bash
# Runs every benchmark in turn; each prints its own markdown tables.
# Usage: bench/all.sh [RUNS]   (RUNS is passed to each script)
set -euo pipefail
D="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
echo "load before: $(uptime)"
for s in closure compile launch; do
  echo
  echo "## $s"
  bash "$D/$s.sh" "$@"
done
echo
echo "load after: $(uptime)"
