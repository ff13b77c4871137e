"""Sync delivery records reach the activity feed: every attempt once (after dedup on the
contract key), dead letters marked, nothing lost when the export is interrupted."""

from __future__ import annotations

from pathlib import Path

import duckdb
from synctools import hook_sync, make_audience, member

from activations.activity_export import export_deliveries, unexported_runs
from activations.engine import run_sync
from activations.state import replay_dead_letters
from headwater import activity


def _run(con: duckdb.DuckDBPyConnection, tmp_path: Path, env: dict[str, str], feed: Path | None):
    return run_sync(con, hook_sync(), lock_dir=tmp_path, environ=env, activity_dir=feed)


def _feed(feed: Path) -> list[tuple]:
    return duckdb.connect().execute(
        f"""select profile_id, action, status, attempt, source, flow, channel, destination,
                   identifier_type, identifier_value
            from {activity.read_sql(feed, 'deliveries')}
            order by profile_id, attempt"""
    ).fetchall()


def test_every_attempt_reaches_the_feed_with_dead_letters_and_replays(
    warehouse, receiver, hook_env, tmp_path
):
    feed = tmp_path / "activity"
    make_audience(warehouse, [member(i) for i in range(3)])
    receiver.reject_profiles = {"p1"}
    for _ in range(3):  # max_attempts=3: p1 is dead after the third run
        _run(warehouse, tmp_path, hook_env, feed)
    receiver.reject_profiles = set()
    assert replay_dead_letters(warehouse, "hook") == 1
    _run(warehouse, tmp_path, hook_env, feed)
    rows = _feed(feed)
    common = ("sync", "hook", "email", "webhook", "profile_id")
    assert rows == [
        ("p0", "add", "delivered", 1, *common, "p0"),
        # The engine's counter restarts at 1 after a replay; the feed's ordinal does not, so
        # (idempotency_key, attempt) names one attempt.
        ("p1", "add", "rejected", 1, *common, "p1"),
        ("p1", "add", "rejected", 2, *common, "p1"),
        ("p1", "add", "dead", 3, *common, "p1"),
        ("p1", "add", "delivered", 4, *common, "p1"),
        ("p2", "add", "delivered", 1, *common, "p2"),
    ]
    assert unexported_runs(warehouse, "hook") == []


def test_runs_without_a_feed_are_exported_by_the_next_run_that_has_one(
    warehouse, receiver, hook_env, tmp_path
):
    feed = tmp_path / "activity"
    make_audience(warehouse, [member(i) for i in range(2)])
    _run(warehouse, tmp_path, hook_env, None)
    assert not (feed / "deliveries").exists()
    make_audience(warehouse, [member(i) for i in range(3)])
    _run(warehouse, tmp_path, hook_env, feed)
    assert [r[0] for r in _feed(feed)] == ["p0", "p1", "p2"]


def test_a_crash_between_file_and_record_duplicates_rows_and_never_loses_them(
    warehouse, receiver, hook_env, tmp_path
):
    feed = tmp_path / "activity"
    make_audience(warehouse, [member(i) for i in range(2)])
    _run(warehouse, tmp_path, hook_env, None)
    # The file is written, then the process dies before recording the export: simulated by
    # forgetting the record, so the next export writes the same rows again.
    assert export_deliveries(warehouse, "hook", "email", "webhook", feed) == 2
    warehouse.execute("delete from headwater_state.activity_exports")
    assert export_deliveries(warehouse, "hook", "email", "webhook", feed) == 2
    con = duckdb.connect()
    raw, distinct = con.execute(
        f"select count(*), count(distinct (idempotency_key, attempt)) "
        f"from {activity.read_sql(feed, 'deliveries')}"
    ).fetchone()
    assert (raw, distinct) == (4, 2)  # copies share the key the dbt model dedups on
    assert export_deliveries(warehouse, "hook", "email", "webhook", feed) == 0
