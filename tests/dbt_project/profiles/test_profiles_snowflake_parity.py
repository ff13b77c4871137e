"""Profiles, scores and segments give the same answers on Snowflake (under fakesnow) as on
DuckDB, from the same generated world: every dialect macro (dates, JSON arrays, aggregation)
has to agree for this to pass.
"""

from __future__ import annotations

import json
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
JSON_COLUMNS = {
    "events": ("traits", "properties", "context"),
    "orders": ("line_items",),
    "crm_contacts": (),
    "consent": (),
}
SELECT = ["+customer_profiles", "+tag:segment", "+propensity_evaluation"]
SEGMENTS = (
    "cart_abandoners", "high_value", "gold_tier", "purchased_recently", "email_reachable",
    "sms_reachable", "ads_reachable", "lapsed_customers", "likely_to_purchase", "churn_risk_high",
)
QUERIES = {
    "profiles": (
        "select profile_id, email, phone, first_name, last_name, loyalty_tier, order_count, "
        "cast(lifetime_value as double), first_order_at, last_seen_at, lifecycle_stage, "
        "email_consent, sms_consent, ads_consent, open_cart_id, cast(open_cart_value as double), "
        "cart_updated_at, qualified_offer, round(purchase_propensity_30d, 9), "
        "round(churn_risk, 9) from customer_profiles"
    ),
    "parameters": "select score_name, feature_index, round(coefficient, 9) "
    "from propensity_parameters",
    "evaluation": "select score_name, split, rows_evaluated, round(auc, 9) "
    "from propensity_evaluation",
    "segments": " union all ".join(f"select '{s}', profile_id from {s}" for s in SEGMENTS),
    "cart_items": "select profile_id, open_cart_items from customer_profiles "
    "where open_cart_id is not null",
}
ENV = {
    "SNOWFLAKE_ACCOUNT": "headwater-test",
    "SNOWFLAKE_USER": "dbt",
    "SNOWFLAKE_PASSWORD": "not-a-secret",
    "SNOWFLAKE_DATABASE": DATABASE,
    "SNOWFLAKE_SCHEMA": SCHEMA,
    "SNOWFLAKE_WAREHOUSE": "compute_wh",
    "SNOWFLAKE_ROLE": "transformer",
}


def _dbt_args(tmp: Path) -> list[str]:
    return [
        "--select", *SELECT,
        # Only the models of this part and their inputs are compared; tests run elsewhere.
        "--exclude", "resource_type:test",
        "--target-path", str(tmp / "target"),
        "--log-path", str(tmp / "logs"),
        "--vars", f"{{as_of: '{AS_OF.isoformat(sep=' ')}'}}",
    ]


def _normalize(name: str, rows: list[tuple]) -> list[tuple]:
    if name == "cart_items":
        # JSON text on DuckDB, an ARRAY on Snowflake: compare the parsed values (so that a
        # quantity of 1 equals 1.0: NUMBER(38, 0) comes back as a decimal under fakesnow).
        return sorted(
            ((pid, json.loads(items) if isinstance(items, str) else items) for pid, items in rows),
            key=lambda r: r[0],
        )
    return sorted((tuple(r) for r in rows), key=repr)


@pytest.fixture(scope="module")
def answers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, list[tuple]]]:
    import snowflake.connector

    tmp = tmp_path_factory.mktemp("profiles_parity")
    world = tmp / "duck.duckdb"
    con = duckdb.connect(str(world))
    generate_world(con, customers=300, seed=11, as_of=AS_OF)
    files = {}
    for table, json_cols in JSON_COLUMNS.items():
        cols = [r[0] for r in con.execute(f"describe raw.{table}").fetchall()]
        select = ", ".join(f'"{c}"::varchar as "{c}"' if c in json_cols else f'"{c}"'
                           for c in cols)
        files[table] = tmp / f"{table}.parquet"
        con.execute(f"copy (select {select} from raw.{table}) to '{files[table]}' (format parquet)")
    con.close()

    run_dbt(
        "build", _dbt_args(tmp / "duck"), Settings.from_env({"HEADWATER_DUCKDB_PATH": str(world)})
    )
    con = duckdb.connect(str(world))
    duck = {name: _normalize(name, con.execute(sql).fetchall()) for name, sql in QUERIES.items()}
    con.close()

    db_path = tmp / "fakesnow"
    db_path.mkdir()
    old = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    try:
        with fakesnow.patch(db_path=str(db_path)):
            sf = snowflake.connector.connect(database=DATABASE)
            cur = sf.cursor()
            cur.execute(f"create database if not exists {DATABASE}")
            cur.execute(f"create schema if not exists {DATABASE}.RAW")
            for table, path in files.items():
                cols = [r[0] for r in duckdb.sql(f"describe select * from '{path}'").fetchall()]
                select = ", ".join(f'parse_json("{c}") as "{c}"' if c in JSON_COLUMNS[table]
                                   else f'"{c}"' for c in cols)
                cur.execute(f"create or replace table {DATABASE}.RAW.{table.upper()} as "
                            f"select {select} from read_parquet('{path}')")
            sf.close()
            run_dbt("build", _dbt_args(tmp / "snow"),
                    Settings.from_env({"HEADWATER_TARGET": "snowflake"}))
            sf = snowflake.connector.connect(database=DATABASE, schema=SCHEMA)
            cur = sf.cursor()
            snow = {}
            for name, sql in QUERIES.items():
                cur.execute(sql)
                snow[name] = _normalize(name, cur.fetchall())
            sf.close()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"duckdb": duck, "snowflake": snow}


@pytest.mark.parametrize("name", sorted(QUERIES))
def test_same_answer_on_both_dialects(
    answers: dict[str, dict[str, list[tuple]]], name: str
) -> None:
    assert len(answers["duckdb"][name]) > 0
    assert answers["snowflake"][name] == answers["duckdb"][name]
