#!/usr/bin/env bash
# Tenant-scale benchmark (BENCHMARKS.md): the release `handler serve` against the release
# `graph-sim`, each in its own process, at 10,000, 100,000 and 1,000,000 users, then the store's
# request units on the Cosmos SDK emulator, then the Cosmos DB store on a request-unit budget.
# One JSON line per scenario on stdout.
#   scripts/bench.sh                full run (~12 min on 2 cores after the release build, ~25 min of
#                                   store RU, then the budgeted Cosmos scenarios)
#   scripts/bench.sh --quick        10,000 users, 5 s baselines, 10,000-user RU run (~2 min)
#   scripts/bench.sh --cosmos-quick the Cosmos DB store on a budget only: 20,000 users at
#                                   1,000 RU/s, 3 warm runs (<= 3 min after the build); one JSON line
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
case "$mode" in
  ""|--quick|--cosmos-quick) ;;
  *) echo "usage: scripts/bench.sh [--quick | --cosmos-quick]" >&2; exit 2 ;;
esac
if [[ "$mode" == "--cosmos-quick" ]]; then
  # In process (emulator, simulator, store): the test build; the request-unit budget sets the pace.
  COSMOS_SCALE_SCENARIOS=quick cargo test --bench cosmos_scale | grep '"scenario":"cosmos_quick"'
  exit 0
fi
cargo build --release --bins
if [[ "$mode" == "--quick" ]]; then
  export TENANT_SCALE_USERS="${TENANT_SCALE_USERS:-10000}" TENANT_SCALE_BASELINE_S="${TENANT_SCALE_BASELINE_S:-5}"
fi
# The driver only spawns, times and reads /proc: a debug build of it does not change the figures,
# and it reuses the test build's dependencies instead of a second release build with dev features.
cargo test --bench tenant_scale
ru_users="${STORE_RU_USERS:-$([[ "$mode" == "--quick" ]] && echo 10000 || echo 100000)}"
STORE_RU_USERS="$ru_users" STORE_RU_RUNS="${STORE_RU_RUNS:-20}" cargo test --bench store_ru | tail -n 1
if [[ "$mode" != "--quick" ]]; then
  cargo test --bench cosmos_scale | grep '"scenario":"cosmos_'
fi
