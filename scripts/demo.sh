#!/usr/bin/env bash
# Sets up, then runs the demo end to end on embedded DuckDB (warehouse/headwater.duckdb).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/headwater demo "$@"
