"""`headwater demo` generates into the configured warehouse, replacing what was there."""

from __future__ import annotations

from pathlib import Path

import duckdb
from click.testing import CliRunner

from headwater.cli import cli


def test_demo_replaces_the_warehouse_and_prints_the_summary(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create table leftover as select 1 as x")
    con.close()
    result = CliRunner().invoke(
        cli, ["demo", "--customers", "50", "--seed", "2", "--as-of", "2025-06-01T00:00:00",
              "--skip-build"],
        env={"HEADWATER_DUCKDB_PATH": str(db)},
    )
    assert result.exit_code == 0, result.output
    assert "Raw rows landed" in result.output and "Dirt injected" in result.output
    con = duckdb.connect(str(db), read_only=True)
    rows = con.execute("select table_name from information_schema.tables").fetchall()
    tables = {r[0] for r in rows}
    assert "leftover" not in tables
    assert con.execute("select count(*) from demo_truth.customers").fetchone()[0] == 50
    assert con.execute("select as_of from demo_truth.world").fetchone()[0].year == 2025


def test_demo_rejects_a_bad_as_of_with_a_hint(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["demo", "--as-of", "yesterday", "--skip-build"],
        env={"HEADWATER_DUCKDB_PATH": str(tmp_path / "wh.duckdb")},
    )
    assert result.exit_code != 0
    assert "ISO timestamp" in result.output
