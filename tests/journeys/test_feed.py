"""Write-behind of the activity feed (journeys/feed.py): rows count as exported only once their
file is durable, every row reaches the feed once, and a failed write loses nothing."""

from __future__ import annotations

import sqlite3
from datetime import timedelta as td
from pathlib import Path

import duckdb
import pytest
from journey_testkit import harness

from headwater import activity
from journeys.state import feed_marks, open_state


def _exported(con, table: str) -> tuple[int, int]:
    """(rows up to the table's feed mark, rows)."""
    mark = feed_marks(con)[table]
    return con.execute(f"select count(*) filter (where rowid <= ?), count(*) from {table}",
                       [mark]).fetchone()


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


def test_rows_a_stopped_process_left_reach_the_feed_once(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        fast = h.open()
        for i in range(2):
            h.track("Signed Up", user_id=f"u{i}", traits={"email": f"u{i}@example.com"})
        h.at(td(seconds=1))
        fast.flush_activity()  # these reach the feed
        h.track("Signed Up", user_id="u7", traits={"email": "u7@example.com"})
        h.at(td(seconds=2))  # committed, never handed to the feed: the process stops here
        done, total = _exported(fast.con, "journal")
        assert 0 < done < total
        fast = h.open()  # a new process finds them past the mark, in the state
        fast.flush_activity()
        done, total = _exported(fast.con, "journal")
        assert done == total
        keys = _feed_keys(tmp_path / "activity")
        assert len(keys) == total == len(set(keys))
        assert any("u7" in k[0] for k in keys)


def test_a_state_file_with_exported_flags_adopts_them_as_its_mark(tmp_path: Path) -> None:
    """State files before feed_marks flagged each row; the rows before the first unflagged one
    are in the feed, and nothing after it is lost."""
    path = tmp_path / "journey_state.sqlite"
    con = sqlite3.connect(path)
    con.execute("create table journal (event_id varchar primary key, journey varchar, "
                "exported boolean not null default 0)")
    con.execute("create index journal_unexported on journal (exported)")
    con.executemany("insert into journal (event_id, exported) values (?, ?)",
                    [("a", 1), ("b", 1), ("c", 0), ("d", 0)])
    con.commit()
    con.close()
    state = open_state(path)
    try:
        assert feed_marks(state) == {"journal": 2, "deliveries": 0}
        indexes = {r[0] for r in state.execute("select name from sqlite_master where type = "
                                               "'index'")}
        assert "journal_unexported" not in indexes
        state.execute("insert into journal (event_id) values ('e')")  # new rows: past the mark
    finally:
        state.close()
    again = open_state(path)
    try:
        assert feed_marks(again) == {"journal": 2, "deliveries": 0}
    finally:
        again.close()
