"""Fixtures and helpers for the identity tests: build the identity models with real dbt on a
private DuckDB file, and read the results back. (pytest runs in importlib mode, so test modules
reach the helpers through the `identity` fixture rather than an import.)"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import duckdb
import pytest

from headwater.config import DBT_PROJECT_DIR, Settings
from headwater.dbt import DbtRunSummary, run_dbt


def build_identity(
    db_path: Path,
    workdir: Path,
    *,
    command: str = "build",
    upstream: bool = True,
    tests: bool = True,
    dbt_vars: dict[str, Any] | None = None,
) -> DbtRunSummary:
    """dbt <command> the identity models (with everything upstream: seed and staging, unless
    upstream=False), with target and log paths private to this test. tests=False skips the
    YAML data tests (a `build` then only seeds and runs).

    dbt re-parses the whole project when vars change, so callers that alternate vars give each
    set of vars its own workdir to keep partial parsing working."""
    settings = Settings(duckdb_path=db_path, target="duckdb", dbt_project_dir=DBT_PROJECT_DIR)
    selection = "+tag:identity" if upstream else "tag:identity"
    args = [
        "--select", selection, "--indirect-selection", "cautious",
        "--target-path", str(workdir / "target"),
        "--log-path", str(workdir / "logs"),
    ]
    if not tests:
        args += ["--exclude-resource-type", "test"]
    if dbt_vars:
        args += ["--vars", json.dumps(dbt_vars)]
    return run_dbt(command, args, settings)


def read_map(db_path: Path) -> dict[tuple[str, str], str]:
    """identity_map as {(identifier_type, identifier_value): profile_id}."""
    with duckdb.connect(str(db_path)) as con:
        rows = con.execute(
            "select identifier_type, identifier_value, profile_id from identity_map"
        ).fetchall()
    return {(t, v): p for t, v, p in rows}


@pytest.fixture(scope="session")
def identity() -> SimpleNamespace:
    """identity.build(db, workdir, ...) and identity.read_map(db)."""
    return SimpleNamespace(build=build_identity, read_map=read_map)


@pytest.fixture(scope="module")
def module_dir(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    return tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
