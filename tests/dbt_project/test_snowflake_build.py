"""The whole dbt project builds on the Snowflake target, under fakesnow.

fakesnow runs Snowflake SQL on DuckDB by transpiling it with sqlglot, inside this process; dbt
therefore runs in-process too. The raw tables are landed in schema RAW of the target database with
Snowflake types (VARIANT for JSON), from a world made by the project's own generator.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

fakesnow = pytest.importorskip("fakesnow")

from headwater.config import Settings  # noqa: E402
from headwater.dbt import run_dbt  # noqa: E402
from headwater.demo.world import generate_world  # noqa: E402

pytestmark = [pytest.mark.snowflake, pytest.mark.slow]

AS_OF = datetime(2026, 11, 1, 12, 0, 0)
DATABASE = "HEADWATER"
SCHEMA = "ANALYTICS"
# raw table -> columns holding JSON (landed as VARIANT)
JSON_COLUMNS = {
    "events": ("traits", "properties", "context"),
    "orders": ("line_items",),
    "crm_contacts": (),
    "consent": (),
}


def _export_world(tmp: Path) -> dict[str, Path]:
    """Generate a small world with the demo generator and export each raw table to Parquet."""
    con = duckdb.connect(str(tmp / "world.duckdb"))
    generate_world(con, customers=300, seed=11, as_of=AS_OF)
    files = {}
    for table, json_cols in JSON_COLUMNS.items():
        cols = [r[0] for r in con.execute(f"describe raw.{table}").fetchall()]
        select = ", ".join(
            f'"{c}"::varchar as "{c}"' if c in json_cols else f'"{c}"' for c in cols
        )
        path = tmp / f"{table}.parquet"
        con.execute(f"copy (select {select} from raw.{table}) to '{path}' (format parquet)")
        files[table] = path
    con.close()
    return files


def _land_raw(files: dict[str, Path]) -> None:
    import snowflake.connector

    con = snowflake.connector.connect(database=DATABASE)
    cur = con.cursor()
    cur.execute(f"create database if not exists {DATABASE}")
    cur.execute(f"create schema if not exists {DATABASE}.RAW")
    cur.execute(f"use database {DATABASE}")
    cur.execute("use schema RAW")
    for table, path in files.items():
        cols = [r[0] for r in duckdb.sql(f"describe select * from '{path}'").fetchall()]
        select = ", ".join(
            f'parse_json("{c}") as "{c}"' if c in JSON_COLUMNS[table] else f'"{c}"' for c in cols
        )
        # read_parquet is DuckDB's; fakesnow passes it through, which is what makes loading fast.
        cur.execute(
            f"create or replace table {DATABASE}.RAW.{table.upper()} as "
            f"select {select} from read_parquet('{path}')"
        )
    con.close()


@pytest.fixture(scope="module")
def snowflake_build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("snowflake")
    files = _export_world(tmp)
    db_path = tmp / "fakesnow"
    db_path.mkdir()
    env = {
        "SNOWFLAKE_ACCOUNT": "headwater-test",
        "SNOWFLAKE_USER": "dbt",
        "SNOWFLAKE_PASSWORD": "not-a-secret",
        "SNOWFLAKE_DATABASE": DATABASE,
        "SNOWFLAKE_SCHEMA": SCHEMA,
        "SNOWFLAKE_WAREHOUSE": "compute_wh",
        "SNOWFLAKE_ROLE": "transformer",
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with fakesnow.patch(db_path=str(db_path)):
            _land_raw(files)
            settings = Settings.from_env({"HEADWATER_TARGET": "snowflake"})
            run_dbt(
                "build",
                [
                    "--target-path",
                    str(tmp / "target"),
                    "--log-path",
                    str(tmp / "logs"),
                    "--vars",
                    f"{{as_of: '{AS_OF.isoformat(sep=' ')}'}}",
                ],
                settings,
            )
            yield db_path
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _query(db_path: Path, sql: str) -> list[tuple]:
    """Query the emulated Snowflake; the module fixture keeps fakesnow's patch active."""
    import snowflake.connector

    con = snowflake.connector.connect(database=DATABASE, schema=SCHEMA)
    cur = con.cursor()
    cur.execute(sql)
    rows = cur.fetchall()
    con.close()
    return rows


def test_every_model_builds_and_tests_pass_on_snowflake(snowflake_build: Path) -> None:
    # run_dbt raises on any failed model or test; reaching here means the build passed.
    profiles = _query(snowflake_build, "select count(*) from customer_profiles")[0][0]
    identifiers = _query(
        snowflake_build, "select count(distinct profile_id) from identity_map"
    )[0][0]
    assert profiles > 0
    assert profiles == identifiers


def test_snowflake_and_duckdb_resolve_the_same_identities(
    snowflake_build: Path, tmp_path: Path
) -> None:
    """Same raw data, same models, two dialects: the same partition of identifiers."""
    world = tmp_path / "duck.duckdb"
    con = duckdb.connect(str(world))
    generate_world(con, customers=300, seed=11, as_of=AS_OF)
    con.close()
    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(world)})
    run_dbt(
        "build",
        [
            "--select",
            "+identity_map",
            "--target-path",
            str(tmp_path / "target"),
            "--log-path",
            str(tmp_path / "logs"),
            "--vars",
            f"{{as_of: '{AS_OF.isoformat(sep=' ')}'}}",
        ],
        settings,
    )
    # Read-write: dbt-duckdb keeps its connection open in this process, with default settings.
    duck = duckdb.connect(str(world)).execute(
        "select identifier_type, identifier_value, profile_id from identity_map"
    ).fetchall()
    snow = _query(
        snowflake_build, "select identifier_type, identifier_value, profile_id from identity_map"
    )
    assert len(duck) > 0
    assert sorted(duck) == sorted((t, v, p) for t, v, p in snow)
