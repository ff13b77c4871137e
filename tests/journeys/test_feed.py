"""Write-behind of the activity feed (journeys/feed.py): rows count as exported only once their
file is durable, every row reaches the feed once, and a failed write loses nothing."""

from __future__ import annotations

from datetime import timedelta as td
from pathlib import Path

import duckdb
import pytest
from journey_testkit import harness

from headwater import activity


def _exported(con, table: str) -> tuple[int, int]:
    return con.execute(f"select count(*) filter (where exported = 1), count(*) from {table}"
                       ).fetchone()


def _feed_keys(folder: Path) -> list[tuple[str, str]]:
    sql = activity.read_sql(folder, activity.JOURNEY_EVENTS)
    return duckdb.sql(f"select instance_id, event from {sql} order by all").fetchall()


def test_rows_are_exported_after_their_file_is_durable(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        fast = h.open()
        fast.write_behind(tmp_path / "journey_state.sqlite")
        for i in range(3):
            h.track("Signed Up", user_id=f"u{i}", traits={"email": f"u{i}@example.com"})
        h.at(td(seconds=1))
        handed = fast.flush_activity(wait=False)
        assert handed > 0
        # The file may already be written, but its rows are marked by the stepping thread at
        # a later call: until then a crash would write them again, never lose them.
        done, total = _exported(fast.con, "journal")
        assert (done, total) == (0, total) and total > 0
        h.track("Signed Up", user_id="u9", traits={"email": "u9@example.com"})
        h.at(td(seconds=2))
        fast.flush_activity(wait=True)
        done, total = _exported(fast.con, "journal")
        assert done == total
        keys = _feed_keys(tmp_path / "activity")
        assert len(keys) == total == len(set(keys))  # each decision once
        assert any(k[0].startswith("welcome:") and "u9" in k[0] for k in keys)


def test_a_failed_write_leaves_the_rows_for_the_next_flush(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        fast = h.open()
        fast.write_behind(tmp_path / "journey_state.sqlite")
        h.track("Signed Up", user_id="u1", traits={"email": "u1@example.com"})
        h.at(td(seconds=1))
        feed = tmp_path / "activity"
        feed.parent.mkdir(parents=True, exist_ok=True)
        feed.write_text("not a folder")  # the feed cannot be written
        fast.flush_activity(wait=False)
        with pytest.raises(OSError):
            fast.flush_activity(wait=True)
        assert _exported(fast.con, "journal")[0] == 0
        feed.unlink()
        fast.flush_activity(wait=True)
        done, total = _exported(fast.con, "journal")
        assert done == total > 0
        assert len(_feed_keys(feed)) == total
