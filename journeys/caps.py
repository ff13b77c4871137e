"""Frequency caps that hold across every journey and every append-mode sync together.

At most `max` messages per profile and channel in any window of `per` (journeys.yml,
`frequency_caps`). Journeys run in the fast-path process, syncs in their own runs; a cap only
holds if both reserve from one ledger, atomically, while neither waits on the other's
database. DuckDB allows one process per file, so the ledger is SQLite (standard library) in WAL
mode: many processes, a write lock held for one short transaction (`BEGIN IMMEDIATE`, count
the window, insert). A reservation is made before the request goes out and kept whatever the
answer, so a retry of the same message (same key) never counts twice and a cap is never
exceeded by messages in flight.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

from headwater.config import Settings
from journeys.config import FrequencyCap


def ledger_path(settings: Settings) -> Path:
    """HEADWATER_CAP_LEDGER_PATH, else `frequency_caps.sqlite` next to the warehouse."""
    override = os.environ.get("HEADWATER_CAP_LEDGER_PATH")
    if override:
        return Path(override).expanduser().resolve()
    return settings.duckdb_path.parent / "frequency_caps.sqlite"


class CapLedger:
    """Reserve sends against the caps; one instance per process, cheap to keep open."""

    def __init__(self, path: Path, caps: Sequence[FrequencyCap]) -> None:
        self.caps = {c.channel.value: c for c in caps}
        path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves; timeout waits for a writer.
        self._db = sqlite3.connect(path, timeout=10.0, isolation_level=None,
                                   check_same_thread=False)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute("pragma synchronous=normal")
        self._db.execute(
            "create table if not exists sends (subject text not null, channel text not null, "
            "sent_at text not null, key text primary key, source text not null)"
        )
        self._db.execute("create index if not exists sends_window on sends (subject, channel, "
                         "sent_at)")

    def reserve(self, subject: str, channel: str, at: datetime, key: str, source: str) -> bool:
        """True when the send may go (reserved now or already, by key); False when capped."""
        cap = self.caps.get(channel)
        if cap is None:
            return True
        db = self._db
        db.execute("begin immediate")
        try:
            if db.execute("select 1 from sends where key = ?", (key,)).fetchone():
                db.execute("commit")
                return True
            since = (at - cap.per).isoformat(sep=" ")
            (count,) = db.execute(
                "select count(*) from sends where subject = ? and channel = ? and sent_at > ?",
                (subject, channel, since),
            ).fetchone()
            if count >= cap.max:
                db.execute("commit")
                return False
            db.execute(
                "insert into sends (subject, channel, sent_at, key, source) values (?,?,?,?,?)",
                (subject, channel, at.isoformat(sep=" "), key, source),
            )
            db.execute("commit")
            return True
        except BaseException:
            db.execute("rollback")
            raise

    def prune(self, before: datetime) -> int:
        """Forget reservations older than every cap's window (keeps the ledger small)."""
        longest = max((c.per for c in self.caps.values()), default=timedelta(0))
        cutoff = (before - longest).isoformat(sep=" ")
        cur = self._db.execute("delete from sends where sent_at < ?", (cutoff,))
        return cur.rowcount

    def close(self) -> None:
        self._db.close()
