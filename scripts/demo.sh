#!/usr/bin/env bash
# The main job, locally: a simulated tenant (the Graph simulator) and the embedded store.
# Extra arguments go to `handler demo` (see `handler demo --help`: --users, --runs, --db, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin handler
exec target/debug/handler demo "$@"
