"""Frequency caps that hold across every journey and every append-mode sync together.

At most `max` messages per profile and channel in any window of `per`, declared once at the
top of dbt_project/journeys.yml (`frequency_caps`). Journeys run in the fast-path process and
syncs in their own runs; a cap only holds if both reserve from one ledger, atomically, while
neither waits on the other's database. DuckDB allows one process per file, so the ledger is
SQLite (standard library) in WAL mode: many processes, a write lock held for one short
transaction (`BEGIN IMMEDIATE`, count the window, insert). A reservation is made before the
request goes out and kept whatever the answer, so a retry of the same message (same key) never
counts twice and a cap is never exceeded by messages in flight.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from activations.config import parse_duration
from activations.destinations.base import (
    Action,
    Channel,
    Destination,
    Outcome,
    Record,
    RecordResult,
)
from headwater.config import Settings


class FrequencyCap(BaseModel):
    """At most `max` messages on `channel` per profile in any window of `per`."""

    model_config = ConfigDict(extra="forbid")
    channel: Channel
    max: int = Field(ge=1)
    per: timedelta

    @field_validator("per", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return parse_duration(value)


def cap_subject(profile_id: str) -> str:
    """The ledger's subject for a profile: journeys and syncs must name people alike."""
    return f"profile:{profile_id}"


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


class CappedDestination:
    """A destination whose SEND records first reserve against the caps (append-mode syncs).

    A capped record is answered REJECTED with the reason, so it is recorded, retried next run
    (when the window may have passed) and dead-lettered after max_attempts like any refusal;
    it is never reported delivered. The reservation is keyed on the record's idempotency key,
    so a retry of the same message never counts twice. Encoded (pass-through) batches are
    turned off: reserving is per record.
    """

    def __init__(self, inner: Destination, ledger: CapLedger, channel: Channel,
                 source: str) -> None:
        self.inner = inner
        self.ledger = ledger
        self.channel = channel
        self.source = source
        self.max_batch_size = inner.max_batch_size
        self.supported_actions = inner.supported_actions
        self.default_base_url = inner.default_base_url
        self.default_rate_limit = inner.default_rate_limit

    def accepts_encoded(self) -> bool:
        return False

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        cap = self.ledger.caps.get(self.channel.value)
        allowed: list[Record] = []
        capped: dict[str, RecordResult] = {}
        now = datetime.now(UTC).replace(tzinfo=None)
        for record in records:
            if record.action == Action.SEND and not self.ledger.reserve(
                cap_subject(record.profile_id), self.channel.value, now,
                record.idempotency_key, self.source,
            ):
                capped[record.idempotency_key] = RecordResult(
                    record.idempotency_key, Outcome.REJECTED, None,
                    f"frequency cap: at most {cap.max if cap else '?'} {self.channel.value} "
                    f"per {cap.per if cap else '?'} per profile",
                )
            else:
                allowed.append(record)
        sent = {r.idempotency_key: r for r in self.inner.send_batch(allowed)} if allowed else {}
        return [capped.get(r.idempotency_key) or sent[r.idempotency_key] for r in records]
