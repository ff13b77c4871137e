"""The identity models on the Snowflake target, run in-process under fakesnow (Snowflake SQL
transpiled to DuckDB by sqlglot): the snowflake__ macros (FastSV rounds and BFS levels issued
with run_query) must build and give the same answers as on DuckDB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

fakesnow = pytest.importorskip("fakesnow")
snowflake_connector = pytest.importorskip("snowflake.connector")

pytestmark = [pytest.mark.snowflake, pytest.mark.slow]

RAW_DDL = (
    "create table RAW.EVENTS (message_id varchar, type varchar, event varchar, user_id varchar,"
    " anonymous_id varchar, previous_id varchar, traits variant, properties variant,"
    " context variant, timestamp timestamp_ntz, received_at timestamp_ntz)",
    "create table RAW.ORDERS (order_id varchar, customer_email varchar, customer_phone varchar,"
    " user_id varchar, total number(18,2), currency varchar, status varchar,"
    " created_at timestamp_ntz, line_items variant)",
    "create table RAW.CRM_CONTACTS (contact_id varchar, email varchar, phone varchar,"
    " first_name varchar, last_name varchar, loyalty_tier varchar, loyalty_points integer,"
    " updated_at timestamp_ntz)",
    "create table RAW.CONSENT (identifier_type varchar, identifier_value varchar,"
    " channel varchar, granted boolean, recorded_at timestamp_ntz)",
)
CHAIN = 40
WORK_TABLES = ("int_identity_components__cc_edges", "int_identity_components__cc_labels",
               "int_identity_components__cc_next", "int_identity_clusters__bfs_edges",
               "int_identity_clusters__bfs_reached")


def _events() -> list[tuple]:
    """(message_id, type, user_id, anonymous_id, previous_id, email), one minute apart."""
    rows: list[tuple] = [
        ("m1", "identify", "u1", "a1", None, "a@x.io"),
        ("m2", "identify", "u2", "a2", None, "TEST@test.com"),
        ("m3", "identify", "u2", "shared", None, None),
        ("m4", "identify", "u1", "shared", None, None),
        ("m5", "alias", "u3", None, "a3", None),
        ("m6", "identify", "u4", "a4", None, "test@test.com"),
    ]
    for i in range(CHAIN):
        rows.append((f"c{i}", "identify", None, f"ch{i}", None, f"c{i}@x.io"))
        rows.append((f"d{i}", "identify", None, f"ch{i + 1}", None, f"c{i}@x.io"))
    rows.append(("cu", "identify", "chain-user", f"ch{CHAIN}", None, None))
    return rows


@pytest.fixture(scope="module")
def snowflake_map(module_dir: Path, monkeypatch_module: pytest.MonkeyPatch) -> dict:
    from dbt.cli.main import dbtRunner

    from headwater.config import DBT_PROJECT_DIR

    for key, value in {
        "SNOWFLAKE_ACCOUNT": "acc", "SNOWFLAKE_USER": "u", "SNOWFLAKE_PASSWORD": "p",
        "SNOWFLAKE_DATABASE": "HW", "SNOWFLAKE_SCHEMA": "MAIN", "SNOWFLAKE_WAREHOUSE": "w",
        "SNOWFLAKE_ROLE": "r", "HEADWATER_TARGET": "snowflake",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }.items():
        monkeypatch_module.setenv(key, value)
    db_dir = module_dir / "fakesnow"
    db_dir.mkdir()
    with fakesnow.patch(db_path=str(db_dir)):
        con = snowflake_connector.connect(account="acc", user="u", password="p", database="HW")
        cur = con.cursor()
        for statement in ("create database if not exists HW", "use database HW",
                          "create schema if not exists RAW", "create schema if not exists MAIN",
                          *RAW_DDL):
            cur.execute(statement)
        for minute, (mid, kind, user_id, anon, prev, email) in enumerate(_events()):
            traits = json.dumps({"email": email}) if email else None
            cur.execute(
                "insert into RAW.EVENTS select %s, %s, null, %s, %s, %s, parse_json(%s),"
                " parse_json('{}'), parse_json('{}'),"
                " dateadd(minute, %s, '2024-01-01'::timestamp_ntz),"
                " dateadd(minute, %s, '2024-01-01'::timestamp_ntz)",
                (mid, kind, user_id, anon, prev, traits, minute, minute))
        cur.execute("insert into RAW.CRM_CONTACTS values ('k1', 'a@x.io', '(415) 555-0101',"
                    " 'A', 'B', 'gold', 1, '2024-03-01'::timestamp_ntz)")
        result = dbtRunner().invoke([
            "build", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
            str(DBT_PROJECT_DIR), "--target", "snowflake",
            "--target-path", str(module_dir / "target"), "--log-path", str(module_dir / "logs"),
            "--select", "+tag:identity", "--indirect-selection", "cautious"])
        assert result.success, result.exception
        cur.execute("select identifier_type, identifier_value, profile_id from MAIN.IDENTITY_MAP")
        mapping = {(t, v): p for t, v, p in cur.fetchall()}
        cur.execute("select identifier_value, reason from MAIN.IDENTITY_REJECTIONS")
        mapping["rejections"] = dict(cur.fetchall())
        mapping["work_tables_left"] = []
        for table in WORK_TABLES:
            try:
                cur.execute(f"select count(*) from MAIN.{table}")
                mapping["work_tables_left"].append(table)
            except snowflake_connector.errors.ProgrammingError:
                pass
    return mapping


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_chain_joins_one_profile_on_snowflake(snowflake_map: dict) -> None:
    chain = {snowflake_map[("anonymous_id", f"ch{i}")] for i in range(CHAIN + 1)}
    chain |= {snowflake_map[("email", f"c{i}@x.io")] for i in range(CHAIN)}
    assert chain == {snowflake_map[("user_id", "chain-user")]}


def test_rules_hold_on_snowflake(snowflake_map: dict) -> None:
    m = snowflake_map
    assert m[("email", "a@x.io")] == m[("user_id", "u1")] == m[("crm_contact_id", "k1")]
    assert m[("phone", "+14155550101")] == m[("user_id", "u1")]
    assert m[("user_id", "u2")] != m[("user_id", "u4")]  # test@test.com merged nobody
    assert m["rejections"]["test@test.com"] == "blocklist"
    assert m["rejections"]["shared"] == "over_shared"
    assert m[("user_id", "u1")] != m[("user_id", "u2")]
    assert m[("anonymous_id", "shared")] == m[("user_id", "u1")]  # its most recent user
    assert m[("anonymous_id", "a3")] == m[("user_id", "u3")]  # alias


def test_work_tables_are_dropped_on_snowflake(snowflake_map: dict) -> None:
    assert snowflake_map["work_tables_left"] == []
