"""Disk work the long-lived worker hands to a thread: activity-feed files and state checkpoints.

Both end in an fsync, and an fsync waits for the disk, which a concurrent dbt build keeps busy
writing its warehouse: tens to hundreds of milliseconds were seen here, during which a worker
that fsynced inline held every event that landed. The step itself never waits for the disk:
its SQLite commits are WAL appends without fsync (journeys/state.py), and with automatic
checkpoints off (a checkpoint fsyncs the database file inside whichever commit trips it) this
thread checkpoints instead, on its own connection.

The rows come from the stepping thread's memory (what it committed since the last hand-over),
never read back from the state: reading and converting the second's ~1,500 rows took that
thread 25 ms every second at 500 events/s, and the events that landed meanwhile waited for it
(the fast path's p99). This thread turns them into Arrow column by column. The stepping thread
moves a table's feed mark (journeys/state.py) only after the file is durable, so a crash in
between writes the rows again, which readers of the feed deduplicate on its contract key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from headwater import activity
from journeys.state import CATALOG, DELIVERY_COLUMNS, JOURNAL_COLUMNS, feed_marks

# Per state table the feed carries: its columns (the feed's, in the feed's order) and kind.
_FEED = {"journal": (JOURNAL_COLUMNS, activity.JOURNEY_EVENTS),
         "deliveries": (DELIVERY_COLUMNS, activity.DELIVERIES)}


@dataclass(frozen=True)
class FeedBatch:
    """Rows of one state table not yet in the feed, up to `last_rowid`, for one feed kind."""

    table: str  # the state table (journeys/state.py FEED_TABLES)
    kind: str  # the feed kind they go to (headwater/activity.py)
    last_rowid: int  # the table's mark once this batch is durable
    rows: list[tuple[Any, ...]]  # in the kind's schema column order

    def write(self, activity_dir: Path) -> None:
        activity.append(activity_dir, self.kind, activity.rows_table(self.kind, self.rows))


class FeedQueue:
    """The journal and delivery rows not yet handed to the feed, kept by the stepping thread.

    Per table: the rows its commits made since the last hand-over (tuples in the feed's column
    order) and the rowid of the last; and its durable feed mark. Together with a write in
    flight, the rows queued are exactly those past the mark. `enabled` false (no activity
    folder) keeps nothing: the rows wait in the state for a driver that has one.
    """

    def __init__(self, con: sqlite3.Connection, *, enabled: bool) -> None:
        self.con = con
        self.enabled = enabled
        self._rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in _FEED}
        self._upto: dict[str, int] = {}

    def committed(self, table: str, rows: list[tuple[Any, ...]]) -> None:
        """Rows a commit just made durable in `table`."""
        if rows and self.enabled:
            self._rows[table] += rows
            (self._upto[table],) = self.con.execute(
                f"select max(rowid) from {CATALOG}.{table}").fetchone() or (0,)

    def take(self) -> list[FeedBatch]:
        """Hand over what is queued, a batch per table."""
        batches = [FeedBatch(table, kind, self._upto[table], self._rows[table])
                   for table, (_, kind) in _FEED.items() if self._rows[table]]
        for batch in batches:
            self._rows[batch.table] = []
        return batches

    def mark(self, batch: FeedBatch) -> None:
        """`batch` is durable in the feed: its table's mark moves past it."""
        self.con.execute(f"insert or replace into {CATALOG}.feed_marks values (?, ?)",
                         [batch.table, batch.last_rowid])

    def refill(self) -> None:
        """The rows past each durable mark, from the state: at start (rows a crash or another
        driver left), after a failed write, after a rollback (a write in flight then may be
        appended twice, which readers deduplicate)."""
        marks = feed_marks(self.con)
        for table, (columns, _) in _FEED.items():
            rows = [] if not self.enabled else self.con.execute(
                f"select rowid, {', '.join(columns)} from {CATALOG}.{table} where rowid > ? "
                "order by rowid", [marks[table]]).fetchall()
            self._rows[table] = [r[1:] for r in rows]
            self._upto[table] = rows[-1][0] if rows else marks[table]


class FeedWriter:
    """One write at a time on one thread; `finished` hands back what became durable."""

    def __init__(self, activity_dir: Path | None, state_path: Path) -> None:
        self.activity_dir = activity_dir
        self.state_path = state_path
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="feed-writer")
        self._inflight: tuple[Future[None], Sequence[FeedBatch]] | None = None

    @property
    def busy(self) -> bool:
        return self._inflight is not None and not self._inflight[0].done()

    def submit(self, batches: Sequence[FeedBatch]) -> None:
        if self._inflight is not None:
            raise RuntimeError("a feed write is in flight: call finished() first")
        self._inflight = (self._pool.submit(self._write, batches), batches)

    def finished(self, *, block: bool) -> Sequence[FeedBatch]:
        """The batches of the write in flight once it is durable (its error, if it failed:
        the rows stay unexported and go again next time); nothing while it is still going."""
        if self._inflight is None or (not block and not self._inflight[0].done()):
            return ()
        future, batches = self._inflight
        self._inflight = None
        future.result()
        return batches

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _write(self, batches: Sequence[FeedBatch]) -> None:
        if self.activity_dir is not None:
            for batch in batches:
                batch.write(self.activity_dir)
        con = sqlite3.connect(self.state_path, timeout=30.0)
        try:
            # PASSIVE: copies what it can without waiting for the stepping thread's commits.
            con.execute("pragma wal_checkpoint(passive)")
        finally:
            con.close()
