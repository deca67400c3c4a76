#!/usr/bin/env bash
# The test command: builds everything and runs every test (unit, integration against the Graph
# simulator and the Cosmos SDK's in-memory emulator, and the handler binary over HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --all-targets --no-fail-fast "$@"
  # nextest does not run doctests.
  cargo test --doc --quiet
else
  cargo test --all-targets --no-fail-fast "$@"
fi
