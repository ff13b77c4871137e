#!/usr/bin/env bash
# Sets up, then runs the linters (ruff, mypy) and the whole test suite (real dbt, real DuckDB, real HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/python -m pytest -n 2 --dist loadfile "$@"
