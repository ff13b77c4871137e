"""Disk work the long-lived worker hands to a thread: activity-feed files and state checkpoints.

Both end in an fsync, and an fsync waits for the disk, which a concurrent dbt build keeps busy
writing its warehouse: tens to hundreds of milliseconds were seen here, during which a worker
that fsynced inline held every event that landed. The step itself never waits for the disk:
its SQLite commits are WAL appends without fsync (journeys/state.py), and with automatic
checkpoints off (a checkpoint fsyncs the database file inside whichever commit trips it) this
thread checkpoints instead, on its own connection.

Rows are marked exported by the stepping thread only after their file is durable, so a crash
in between writes them again, which readers of the feed deduplicate on its contract key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Append = Callable[[Path, list[dict[str, Any]]], Any]


@dataclass(frozen=True)
class FeedBatch:
    """Unexported rows of one state table, up to `last_rowid`, for one feed kind."""

    table: str
    last_rowid: int
    append: Append
    rows: list[dict[str, Any]]


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
                batch.append(self.activity_dir, batch.rows)
        con = sqlite3.connect(self.state_path, timeout=30.0)
        try:
            # PASSIVE: copies what it can without waiting for the stepping thread's commits.
            con.execute("pragma wal_checkpoint(passive)")
        finally:
            con.close()
