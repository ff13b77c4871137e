"""headwater.snapshots: publish, the change log, pruning, readers during a publish."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from headwater import snapshots
from headwater.config import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"HEADWATER_DUCKDB_PATH": str(tmp_path / "wh.duckdb")})


def _audience(settings: Settings, sql: str) -> None:
    with duckdb.connect(str(settings.duckdb_path)) as con:
        con.execute(f"create or replace table audience_x as {sql}")


BASE = "select 'p' || i as profile_id, i as points, now() as computed_as_of from range(50) t(i)"


def test_change_log_holds_only_changed_rows(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _audience(settings, BASE)
    first = snapshots.publish(settings)
    assert first.models["audience_x"].rows == 50 and first.models["audience_x"].changes == []
    # Same rows, new build time: not a change (computed_as_of is build metadata).
    _audience(settings, BASE)
    same = snapshots.publish(settings)
    assert same.models["audience_x"] == first.models["audience_x"]
    # p1 changes, p2 leaves, p99 joins.
    _audience(settings, "select 'p' || i as profile_id, case when i = 1 then 100 else i end "
              "as points, now() as computed_as_of from range(50) t(i) where i <> 2 "
              "union all select 'p99', 99, now()")
    third = snapshots.publish(settings)
    (change,) = third.changes_after("audience_x", first.seq) or []
    assert (change.upserts, change.removes) == (2, 1)
    folder = snapshots.published_dir(settings)
    with duckdb.connect() as con:
        rows = con.execute(
            f"select profile_id, _hw_change, points from "
            f"{snapshots.change_relation([change], folder)} order by profile_id"
        ).fetchall()
        assert rows == [("p1", "upsert", 100), ("p2", "remove", None), ("p99", "upsert", 99)]
        assert con.execute(
            f"select count(*) from {snapshots.relation('audience_x', settings)}"
        ).fetchone() == (50,)
    assert third.changes_after("audience_x", third.seq) == []
    assert third.changes_after("audience_x", 0) is None  # before the first snapshot
    assert third.changes_after("missing", 0) is None


def test_readers_of_the_previous_manifest_still_find_their_files(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _audience(settings, BASE)
    old = snapshots.publish(settings)
    for n in range(snapshots.KEEP_SNAPSHOTS):
        _audience(settings, BASE.replace("range(50)", f"range({51 + n})"))
        snapshots.publish(settings)
    folder = snapshots.published_dir(settings)
    kept = sorted((folder / "models" / "audience_x").glob("*.parquet"))
    assert len(kept) == snapshots.KEEP_SNAPSHOTS
    assert not (folder / old.models["audience_x"].path).exists()  # pruned beyond the window
    assert not list(folder.rglob("*.tmp"))


def test_publish_in_a_process_that_holds_the_warehouse(tmp_path: Path) -> None:
    # `headwater build` runs dbt in-process and dbt-duckdb keeps its connection open.
    settings = _settings(tmp_path)
    _audience(settings, BASE)
    holder = duckdb.connect(str(settings.duckdb_path))
    try:
        manifest = snapshots.publish(settings)
    finally:
        holder.close()
    assert manifest.models["audience_x"].rows == 50


def test_relation_without_a_publish_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(snapshots.SnapshotError, match="headwater build"):
        snapshots.relation("audience_x", _settings(tmp_path))
