#!/usr/bin/env bash
# Tenant-scale benchmark (BENCHMARKS.md): the release `handler serve` against the release
# `graph-sim`, each in its own process, at 10,000, 100,000 and 1,000,000 users, then the store's
# request units on the Cosmos SDK emulator. One JSON line per scenario on stdout.
#   scripts/bench.sh            full run (~12 min on 2 cores after the release build, then ~25 min of store RU)
#   scripts/bench.sh --quick    10,000 users, 5 s baselines, 10,000-user RU run (~2 min)
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
cargo build --release --bins
if (( quick )); then
  export TENANT_SCALE_USERS="${TENANT_SCALE_USERS:-10000}" TENANT_SCALE_BASELINE_S="${TENANT_SCALE_BASELINE_S:-5}"
fi
# The driver only spawns, times and reads /proc: a debug build of it does not change the figures,
# and it reuses the test build's dependencies instead of a second release build with dev features.
cargo test --bench tenant_scale
ru_users="${STORE_RU_USERS:-$([[ $quick == 1 ]] && echo 10000 || echo 100000)}"
STORE_RU_USERS="$ru_users" STORE_RU_RUNS="${STORE_RU_RUNS:-20}" cargo test --bench store_ru | tail -n 1
