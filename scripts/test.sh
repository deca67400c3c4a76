#!/usr/bin/env bash
# The test command: builds everything and runs every test (unit, integration against the Graph
# simulator and the Cosmos SDK's in-memory emulator, and the handler binary over HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
# The OS tools some tests need (util-linux etc.); quiet when they are there.
scripts/install-test-deps.sh
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast "$@"
else
  cargo test --no-fail-fast "$@"
fi
