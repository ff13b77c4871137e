"""The activity feed writer: contract schemas, atomic files, globs valid when empty."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from headwater import activity
from headwater.config import Settings


def test_folder_from_env_or_next_to_the_warehouse(tmp_path: Path) -> None:
    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(tmp_path / "wh" / "x.duckdb")})
    assert activity.activity_dir(settings, {}) == tmp_path / "wh" / "activity"
    env = {"HEADWATER_ACTIVITY_DIR": str(tmp_path / "elsewhere")}
    assert activity.activity_dir(settings, env) == tmp_path / "elsewhere"


def test_empty_folder_reads_as_zero_rows_with_the_contract_columns(tmp_path: Path) -> None:
    con = duckdb.connect()
    for kind, schema in activity.SCHEMAS.items():
        cur = con.execute(f"select * from {activity.read_sql(tmp_path, kind)}")
        assert [d[0] for d in cur.description] == schema.names
        assert cur.fetchall() == []


def test_rows_and_tables_append_as_new_files(tmp_path: Path) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5)
    first = activity.append_deliveries(tmp_path, [
        {"source": "sync", "flow": "s1", "channel": "email", "destination": "sendgrid",
         "run_id": "r1", "idempotency_key": "k1", "profile_id": "p1",
         "identifier_type": "profile_id", "identifier_value": "p1", "action": "add",
         "status": "delivered", "attempt": 1, "response_code": 202, "attempted_at": at},
    ])
    table = pa.table({"event_id": ["e1"], "journey": ["j"], "holdout": [True],
                      "event": ["entered"], "latency_ms": [12.5],
                      "occurred_at": pa.array([at], pa.timestamp("us"))})
    second = activity.append_journey_events(tmp_path, table)
    assert first is not None and first.parent.name == "deliveries"
    assert second is not None and second.parent.name == "journey_events"
    assert activity.append_deliveries(tmp_path, []) is None
    # Nothing half-written is left behind, and no temporary matches the glob.
    assert not list(tmp_path.rglob(".*.tmp"))
    con = duckdb.connect()
    row = con.execute(
        f"select flow, journey, attempt, attempted_at from "
        f"{activity.read_sql(tmp_path, 'deliveries')}"
    ).fetchall()
    assert row == [("s1", None, 1, at)]
    row = con.execute(
        f"select event_id, holdout, latency_ms, step from "
        f"{activity.read_sql(tmp_path, 'journey_events')}"
    ).fetchall()
    assert row == [("e1", True, 12.5, None)]


def test_aware_timestamps_become_naive_utc(tmp_path: Path) -> None:
    paris = timezone(timedelta(hours=2))
    activity.append_journey_events(tmp_path, [
        {"event_id": "e", "journey": "j", "event": "entered",
         "occurred_at": datetime(2026, 1, 1, 12, 0, tzinfo=paris)}])
    got = duckdb.connect().execute(
        f"select occurred_at from {activity.read_sql(tmp_path, 'journey_events')}").fetchone()
    assert got == (datetime(2026, 1, 1, 10, 0),)


def test_columns_outside_the_contract_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not in the activity contract"):
        activity.append_deliveries(tmp_path, [{"flow": "x", "colour": "red"}])
    with pytest.raises(ValueError, match="not in the activity contract"):
        activity.append_journey_events(tmp_path, pa.table({"colour": ["red"]}))


def test_rows_as_tuples_become_the_contract_table(tmp_path: Path) -> None:
    """What the journeys worker hands the feed: tuples in the schema's column order."""
    names = activity.JOURNEY_EVENT_SCHEMA.names
    local = datetime(2025, 1, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    row = tuple({"event_id": "e1", "holdout": False, "occurred_at": local,
                 "latency_ms": 3.5}.get(n) for n in names)
    table = activity.rows_table(activity.JOURNEY_EVENTS, [row])
    assert table.schema == activity.JOURNEY_EVENT_SCHEMA
    assert table.column("occurred_at")[0].as_py() == datetime(2025, 1, 1, 12, 0)  # naive UTC
    activity.append(tmp_path, activity.JOURNEY_EVENTS, table)
    sql = activity.read_sql(tmp_path, activity.JOURNEY_EVENTS)
    assert duckdb.sql(f"select event_id, latency_ms from {sql}").fetchall() == [("e1", 3.5)]
    with pytest.raises(ValueError, match="columns"):
        activity.rows_table(activity.JOURNEY_EVENTS, [row[:-1]])
