"""Draining the outbox: stream pending intents out of the warehouse, send, record each answer.

Pending rows are read with DuckDB's Arrow record-batch reader (memory stays at one batch
however large the diff), mapped and templated into Records, sent, and every answer is appended
to `headwater_state.delivery_records` as it comes. The outbox row itself is only updated when
the pass is folded (state.fold), so the per-batch cost is one append, not an update.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa

from activations.destinations.base import (
    Action,
    Destination,
    Outcome,
    Record,
    RecordResult,
    TransientDestinationError,
)
from activations.jsonfast import loads
from activations.state import SCHEMA
from activations.templates import CompiledTemplates, TemplateRenderError

# Removes first: a mirror destination should shrink before it grows (ad audience caps).
ACTION_ORDER: tuple[Action, ...] = (Action.REMOVE, Action.UPDATE, Action.ADD, Action.SEND)

ACK_SCHEMA = pa.schema(
    [
        ("sync_name", pa.string()),
        ("run_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("profile_id", pa.string()),
        ("action", pa.string()),
        ("status", pa.string()),
        ("attempt", pa.int32()),
        ("response_code", pa.int32()),
        ("error", pa.string()),
        ("external_id", pa.string()),
        ("attempted_at", pa.timestamp("us")),
    ]
)


class AckWriter:
    """Appends answers to delivery_records; flushes every `flush_rows` or `flush_seconds`.

    A crash loses at most the unflushed answers: those records are still pending and go again
    with the same idempotency key, which the destination deduplicates.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str,
        flush_rows: int = 20_000, flush_seconds: float = 1.0,
    ) -> None:
        self.con = con
        self.sync_name = sync_name
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self._cols: dict[str, list[Any]] = {f.name: [] for f in ACK_SCHEMA}
        self._last_flush = time.monotonic()

    def add_batch(
        self, records: Sequence[Record], attempts: Sequence[int],
        results: Sequence[RecordResult], action: Action,
    ) -> None:
        """One attempt per record of a request: the same action and timestamp for all."""
        n = len(records)
        c = self._cols
        c["sync_name"].extend([self.sync_name] * n)
        c["run_id"].extend([self.run_id] * n)
        c["idempotency_key"].extend([r.idempotency_key for r in records])
        c["profile_id"].extend([r.profile_id for r in records])
        c["action"].extend([action.value] * n)
        c["status"].extend([r.outcome.value for r in results])
        c["attempt"].extend(attempts)
        c["response_code"].extend([r.status_code for r in results])
        c["error"].extend([r.error for r in results])
        c["external_id"].extend([r.external_id for r in results])
        c["attempted_at"].extend([datetime.now(UTC).replace(tzinfo=None)] * n)

    def maybe_flush(self) -> None:
        pending = len(self._cols["sync_name"])
        if pending >= self.flush_rows or (
            pending and time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        if not self._cols["sync_name"]:
            return
        table = pa.Table.from_pydict(self._cols, schema=ACK_SCHEMA)
        names = ", ".join(ACK_SCHEMA.names)
        self.con.register("hw_ack_batch", table)
        try:
            self.con.execute(
                f"insert into {SCHEMA}.delivery_records ({names}) select {names} from hw_ack_batch"
            )
        finally:
            self.con.unregister("hw_ack_batch")
        self._cols = {f.name: [] for f in ACK_SCHEMA}
        self._last_flush = time.monotonic()


@dataclass
class DrainCounts:
    sent: int = 0
    delivered: int = 0
    rejected: int = 0
    retry: int = 0
    requests: int = 0
    # Why the pass stopped early (destination down, credentials refused), if it did.
    stopped: str | None = None
    by_action: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordMapper:
    """Turns an outbox payload (audience columns) into a Record's destination fields."""

    # destination field -> audience column, identifiers and plain fields together
    columns: Mapping[str, str]
    templates: CompiledTemplates | None

    def fields(self, row: Mapping[str, Any]) -> dict[str, Any]:
        out = {dest: row.get(col) for dest, col in self.columns.items()}
        if self.templates is not None and self.templates.templates:
            out.update(self.templates.render(row))
        return out

    def identifiers_only(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {dest: row[col] for dest, col in self.columns.items() if col in row}


ProgressFn = Callable[[int, int], None]


def pending_count(con: duckdb.DuckDBPyConnection, sync_name: str) -> int:
    row = con.execute(
        f"select count(*) from {SCHEMA}.outbox where sync_name = ? and status = 'pending'",
        [sync_name],
    ).fetchall()[0]
    return int(row[0]) if row else 0


def drain(
    con: duckdb.DuckDBPyConnection,
    sync_name: str,
    run_id: str,
    destination: Destination,
    mapper: RecordMapper,
    batch_size: int,
    progress: ProgressFn | None = None,
    ack_flush_rows: int = 20_000,
) -> DrainCounts:
    """Send every pending intent of the sync; stop at the first transient failure."""
    counts = DrainCounts()
    acks = AckWriter(con, sync_name, run_id, flush_rows=ack_flush_rows)
    total = pending_count(con, sync_name)
    reader_con = con.cursor()
    try:
        for action in ACTION_ORDER:
            reader = reader_con.sql(
                f"""select idempotency_key, profile_id, payload, attempts
                from {SCHEMA}.outbox
                where sync_name = ? and status = 'pending' and action = ?""",
                params=[sync_name, action.value],
            ).to_arrow_reader(batch_size)
            for batch in reader:
                stopped = _send_batch(batch, action, destination, mapper, acks, counts)
                acks.maybe_flush()
                if progress is not None:
                    progress(counts.sent, total)
                if stopped:
                    counts.stopped = stopped
                    return counts
    finally:
        acks.flush()
        reader_con.close()
    return counts


def _send_batch(
    batch: pa.RecordBatch,
    action: Action,
    destination: Destination,
    mapper: RecordMapper,
    acks: AckWriter,
    counts: DrainCounts,
) -> str | None:
    keys = batch.column(0).to_pylist()
    profiles = batch.column(1).to_pylist()
    payloads = batch.column(2).to_pylist()
    attempts = [a + 1 for a in batch.column(3).to_pylist()]
    records: list[Record] = []
    record_attempts: list[int] = []
    failed: list[Record] = []
    failed_results: list[RecordResult] = []
    failed_attempts: list[int] = []
    remove = action == Action.REMOVE
    for key, profile_id, payload, attempt in zip(keys, profiles, payloads, attempts, strict=True):
        row = loads(payload) if payload else {}
        try:
            # A removed member is described by the identifiers kept in the state only.
            fields = mapper.identifiers_only(row) if remove else mapper.fields(row)
        except TemplateRenderError as exc:
            failed.append(Record(profile_id, action, {}, key))
            failed_results.append(RecordResult(key, Outcome.REJECTED, None, str(exc)))
            failed_attempts.append(attempt)
            continue
        records.append(Record(profile_id, action, fields, key))
        record_attempts.append(attempt)
    if failed:
        acks.add_batch(failed, failed_attempts, failed_results, action)
        counts.rejected += len(failed)
        counts.sent += len(failed)
    if not records:
        return None
    stopped: str | None = None
    try:
        results: Sequence[RecordResult] = destination.send_batch(records)
    except TransientDestinationError as exc:
        stopped = str(exc)
        results = [RecordResult(r.idempotency_key, Outcome.RETRY, None, stopped) for r in records]
    if len(results) != len(records) or any(
        res.idempotency_key != rec.idempotency_key
        for res, rec in zip(results, records, strict=True)
    ):
        by_key = {r.idempotency_key: r for r in results}
        results = [
            by_key.get(rec.idempotency_key)
            or RecordResult(rec.idempotency_key, Outcome.RETRY, None, "no result returned")
            for rec in records
        ]
    acks.add_batch(records, record_attempts, results, action)
    for result in results:
        if result.outcome == Outcome.DELIVERED:
            counts.delivered += 1
        elif result.outcome == Outcome.REJECTED:
            counts.rejected += 1
        else:
            counts.retry += 1
    counts.sent += len(records)
    counts.requests += 1
    counts.by_action[action.value] = counts.by_action.get(action.value, 0) + len(records)
    return stopped
