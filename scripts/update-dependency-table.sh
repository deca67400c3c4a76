#!/usr/bin/env bash
# Regenerates the dependency table of docs/data-handling.md from Cargo.lock
# (examples/update_dependency_table.rs; tests/licenses.rs checks it and never writes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --example update_dependency_table
