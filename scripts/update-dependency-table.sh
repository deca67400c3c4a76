#!/usr/bin/env bash
# Regenerates the dependency table of docs/data-handling.md from Cargo.lock.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_DEPENDENCY_TABLE=1 cargo test --quiet --test licenses dependency_table_in_the_data_handling_document_is_current
