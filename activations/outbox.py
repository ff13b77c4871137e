"""Draining the outbox: stream pending intents out of the warehouse, send, record each answer.

Pending rows are read a page (DRAIN_PAGE_ROWS) at a time, each page with DuckDB's Arrow
record-batch reader, mapped and templated into Records and sent; answers are appended to
`headwater_state.delivery_records` and applied to the outbox and the state (state.fold_acks)
in one transaction per flush, at the latest at the end of each page. So what the drain holds,
and what one of its transactions writes, is bounded by a page however large the diff: the
reader's transaction ends with its page (an open one keeps DuckDB from checkpointing, so every
answer recorded meanwhile stayed in memory), and the fold is no longer one transaction over
the whole pass.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from activations import state
from activations.destinations.base import (
    Action,
    Destination,
    EncodedBatch,
    Outcome,
    Record,
    RecordResult,
    TransientDestinationError,
)
from activations.jsonfast import loads
from activations.memory import release_memory, setting
from activations.plan import plan_chunk_rows
from activations.state import SCHEMA, FoldCounts
from activations.templates import CompiledTemplates, TemplateRenderError

# Pending intents read per query, and at most the answers applied per transaction; a few
# requests' worth, so that the pause at each page's end (the last request is answered and the
# answers applied before the next page is read) costs little. A page's read and the fold of its
# answers hold memory in proportion to it (about 1.5 KB a row while read): pages of 20,000 made
# the drain of 1% churn at 10M members peak at 224-229 MB against 186 MB at 1M, whose churn
# fits in pages of a few thousand; pages of 5,000 at 209-217 MB, no slower.
DRAIN_PAGE_ROWS = 5_000

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
    """Appends answers to delivery_records and applies them (state.fold_acks) in one
    transaction per flush; flushes every `flush_rows` or `flush_seconds`.

    Answers are kept as Arrow record batches and written with one INSERT per flush, so the
    per-record cost is a slot in a column, not a row-wise write.
    A crash loses at most the unflushed answers: those records are still pending and go again
    with the same idempotency key, which the destination deduplicates.
    """

    def __init__(
        self, con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str,
        flush_rows: int = 20_000, flush_seconds: float = 1.0, max_attempts: int = 5,
    ) -> None:
        self.con = con
        self.sync_name = sync_name
        self.run_id = run_id
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_attempts = max_attempts
        # What the flushes so far applied: the pass's counts.
        self.folded = FoldCounts(0, 0, 0, 0)
        self._batches: list[pa.RecordBatch] = []
        self._rows = 0
        self._last_flush = time.monotonic()
        # The outbox rowids (lowest, highest) of the intents read since the last flush: where
        # the flush's fold finds them (state.fold_acks). None: read the whole outbox.
        self._rowids: tuple[int, int] | None = None

    def read_at(self, rowids: tuple[int | None, int | None]) -> None:
        """The answers added next are of intents read at these outbox rowids (lowest,
        highest; None for an empty batch, which adds no answer). Only a hint: the fold reads
        the whole outbox unless every answered intent is in the range."""
        lo, hi = rowids
        if lo is None or hi is None:
            return
        if self._rowids is not None:
            lo, hi = min(lo, self._rowids[0]), max(hi, self._rowids[1])
        self._rowids = (lo, hi)

    def add_batch(
        self, records: Sequence[Record], attempts: Sequence[int],
        results: Sequence[RecordResult], action: Action,
    ) -> None:
        """One attempt per record of a request: the same action and timestamp for all."""
        self.add_arrays(
            pa.array([r.idempotency_key for r in records], pa.string()),
            pa.array([r.profile_id for r in records], pa.string()),
            pa.array(attempts, pa.int32()),
            [r.outcome.value for r in results],
            [r.status_code for r in results],
            [r.error for r in results],
            action,
            [r.external_id for r in results],
        )

    def add_arrays(
        self, keys: pa.Array, profiles: pa.Array, attempts: pa.Array, status: list[str],
        codes: list[int | None], errors: list[str | None], action: Action,
        external_ids: list[str | None] | None = None,
    ) -> None:
        """The same, from columns: the key and profile arrays come straight from the reader."""
        n = len(keys)
        now = datetime.now(UTC).replace(tzinfo=None)
        self._batches.append(pa.RecordBatch.from_arrays(
            [
                pa.repeat(self.sync_name, n),
                pa.repeat(self.run_id, n),
                keys.cast(pa.string()),
                profiles.cast(pa.string()),
                pa.repeat(action.value, n),
                pa.array(status, pa.string()),
                attempts.cast(pa.int32()),
                pa.array(codes, pa.int32()),
                pa.array(errors, pa.string()),
                pa.array(external_ids, pa.string()) if external_ids else pa.nulls(n, pa.string()),
                pa.repeat(pa.scalar(now, pa.timestamp("us")), n),
            ],
            schema=ACK_SCHEMA,
        ))
        self._rows += n

    def maybe_flush(self) -> None:
        if self._rows >= self.flush_rows or (
            self._rows and time.monotonic() - self._last_flush >= self.flush_seconds
        ):
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        table = pa.Table.from_batches(self._batches, schema=ACK_SCHEMA)
        names = ", ".join(ACK_SCHEMA.names)
        self.con.register("hw_ack_batch", table)
        try:
            self.con.execute("begin transaction")
            try:
                self.con.execute(f"insert into {SCHEMA}.delivery_records ({names}) "
                                 f"select {names} from hw_ack_batch")
                folded = state.fold_acks(self.con, self.sync_name, "hw_ack_batch",
                                         self.max_attempts, self._rowids)
                self.con.execute("commit")
            except BaseException:
                self.con.execute("rollback")
                raise
        finally:
            self.con.unregister("hw_ack_batch")
        self.folded = self.folded + folded
        self._batches = []
        self._rows = 0
        self._last_flush = time.monotonic()
        self._rowids = None


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
    # What the answers did once applied to the outbox and the state (state.fold_acks).
    folded: FoldCounts = field(default_factory=lambda: FoldCounts(0, 0, 0, 0))


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


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def record_json_sql(columns: Mapping[str, str]) -> str:
    """SQL for one outbox row as the generic record JSON, fields mapped from its payload.

    Equal to what RecordMapper.fields gives without templates: a column missing from the
    payload is null, like `row.get(col)`.
    """
    pairs = ", ".join(
        f"{_sql_str(dest)}, payload -> {_sql_str('/' + col.replace('~', '~0').replace('/', '~1'))}"
        for dest, col in columns.items()
    )
    fields = f"json_object({pairs})" if pairs else "'{}'::json"
    return (
        "cast(json_object('idempotency_key', idempotency_key, 'profile_id', profile_id, "
        f"'action', action, 'fields', {fields}) as varchar)"
    )


@dataclass
class _Job:
    """One batch ready to go: `send` runs on the sender thread, `finish` back on the caller's."""

    size: int
    send: Callable[[], Any]
    finish: Callable[[Any], str | None]


def drain(
    con: duckdb.DuckDBPyConnection,
    sync_name: str,
    run_id: str,
    destination: Destination,
    mapper: RecordMapper,
    batch_size: int,
    progress: ProgressFn | None = None,
    ack_flush_rows: int = 20_000,
    max_attempts: int = 5,
    page_rows: int | None = None,
) -> DrainCounts:
    """Send every pending intent of the sync once; stop at the first transient failure.

    Pipelined: while batch N is in flight on one sender thread, batch N+1 is read and encoded.
    One sender keeps requests in submission order (removes before adds), and every answer is
    recorded on this thread before the next request is submitted, so at most one request is
    ever unanswered, as before. `counts.folded` is what the applied answers did.

    Pages: each reads up to `page_rows` (DRAIN_PAGE_ROWS) pending intents this pass has not
    answered yet. Every intent read is answered (delivered, rejected, or retry when unanswered)
    and its answer applied before the next page is read, which takes it out of the next page:
    delivered intents leave the outbox, rejected ones are no longer pending, and the others
    carry this pass as last_run_id. A page that returned fewer rows than asked was the last of
    its action.
    """
    total = pending_count(con, sync_name)
    # A large pass (a first sync) in a few large pages, as a large plan is written
    # (plan.plan_chunk_rows): each fold of answers reads and rewrites the outbox, and a first
    # sync of 1M in pages of 20k paid 45 of them. Whole batches: a page boundary never splits
    # a request.
    page_rows = plan_chunk_rows(total, page_rows or DRAIN_PAGE_ROWS)
    page_rows = max(1, page_rows // batch_size) * batch_size
    counts = DrainCounts()
    flush_rows = ack_flush_rows if page_rows <= DRAIN_PAGE_ROWS else page_rows
    acks = AckWriter(con, sync_name, run_id, flush_rows=min(flush_rows, page_rows),
                     max_attempts=max_attempts)
    reader_con = con.cursor()
    limit = setting(con, "memory_limit")
    vacuum = setting(con, "max_vacuum_tasks")
    encoded = _encoded_ok(destination, mapper)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hw-send")
    inflight: tuple[Future[Any], _Job] | None = None

    def settle() -> str | None:
        nonlocal inflight
        assert inflight is not None
        future, job = inflight
        inflight = None
        stopped = job.finish(future.result())
        acks.maybe_flush()
        if progress is not None:
            progress(counts.sent, total)
        return stopped

    # No checkpoint during the drain merges the outbox's row groups that have deletes (its
    # vacuum, restored after): each page deletes the intents it delivered, and a checkpoint
    # triggered by a page's commit rewrote the partly deleted row groups of the whole outbox,
    # payloads included: in a first sync of 10M members that took DuckDB's whole budget (240
    # MB) for a moment, at 1M far less. Row groups a drain empties are dropped without it; the
    # rest are merged by the next checkpoint outside a drain. Rows then also keep their rowids
    # (AckWriter.read_at). Between pages, DuckDB's cache of table blocks is let go of
    # (memory.release_memory): every page reads and writes new blocks (its intents, its
    # delivery records, the state it folds into, the checkpoints those commits trigger), and
    # without it a first sync of 10M filled the sync's whole budget with blocks it never read
    # again, while one of 1M stayed below it. A WAL past half its threshold is checkpointed
    # there too, between pages, rather than by a page's commit on top of what the page holds.
    con.execute("set max_vacuum_tasks = 0")
    try:
        for action in ACTION_ORDER:
            fast = encoded and action != Action.REMOVE
            record = record_json_sql(mapper.columns) if fast else "payload"
            previous: set[str] = set()
            while True:
                release_memory(con, limit)
                # rowid: where the page's fold finds these intents (AckWriter.read_at).
                reader = reader_con.sql(
                    f"""select idempotency_key, profile_id, attempts + 1 as attempt, {record},
                           rowid
                    from {SCHEMA}.outbox
                    where sync_name = ? and status = 'pending' and action = ?
                      and last_run_id is distinct from ?
                    limit {int(page_rows)}""",
                    params=[sync_name, action.value, run_id],
                ).to_arrow_reader(batch_size)
                read = 0
                keys: set[str] = set()
                try:
                    for batch in reader:
                        read += batch.num_rows
                        page_keys = batch.column(0).to_pylist()
                        # Cannot happen while every answer is applied before the next page:
                        # were it to, the intent would be sent twice in one pass.
                        if not previous.isdisjoint(page_keys):
                            raise RuntimeError(
                                f"sync {sync_name}: an intent was read again in pass {run_id}")
                        keys.update(page_keys)
                        span = pc.min_max(batch.column(4))
                        rowids = (span["min"].as_py(), span["max"].as_py())
                        job: _Job | None
                        if fast:
                            job = _encoded_job(batch, action, destination, acks, counts, rowids)
                        else:
                            job = _record_job(batch, action, destination, mapper, acks, counts,
                                              rowids)
                        if inflight is not None and (stopped := settle()):
                            counts.stopped = stopped
                            return counts
                        if job is not None:
                            inflight = (executor.submit(job.send), job)
                        elif progress is not None:
                            progress(counts.sent, total)
                finally:
                    reader.close()
                # The page's last answer, and all of them applied, before the next page.
                if inflight is not None and (stopped := settle()):
                    counts.stopped = stopped
                    return counts
                acks.flush()
                if read < page_rows:
                    break
                previous = keys
    finally:
        if inflight is not None:
            # Unwinding from an error: still record the answer of the request in flight.
            with contextlib.suppress(Exception):
                settle()
        executor.shutdown(wait=True)
        try:
            acks.flush()
        finally:
            con.execute(f"set max_vacuum_tasks = {int(vacuum or 100)}")
        counts.folded = acks.folded
        reader_con.close()
    return counts


def _encoded_ok(destination: Destination, mapper: RecordMapper) -> bool:
    """Templates need Python per record; everything else can be encoded in the warehouse."""
    if mapper.templates is not None and mapper.templates.templates:
        return False
    accepts = getattr(destination, "accepts_encoded", None)
    return bool(accepts is not None and accepts() and hasattr(destination, "send_encoded"))


def _call(send: Callable[[], Any]) -> Callable[[], Any]:
    """Run on the sender thread; a transient failure comes back as a value, not a raise."""

    def run() -> Any:
        try:
            return send()
        except TransientDestinationError as exc:
            return exc

    return run


def _encoded_job(
    batch: pa.RecordBatch, action: Action, destination: Destination, acks: AckWriter,
    counts: DrainCounts, rowids: tuple[int | None, int | None],
) -> _Job:
    keys_arr, profiles, attempts = batch.column(0), batch.column(1), batch.column(2)
    keys: list[str] = keys_arr.to_pylist()
    encoded = EncodedBatch(action, keys, batch.column(3).to_pylist())
    n = len(keys)
    send_encoded = destination.send_encoded  # type: ignore[attr-defined]

    def finish(answer: Any) -> str | None:
        # Unanswered until a span says otherwise (a destination that skips records).
        status: list[str] = [Outcome.RETRY.value] * n
        codes: list[int | None] = [None] * n
        errors: list[str | None] = ["no result returned"] * n
        stopped: str | None = None
        requests = 1
        if isinstance(answer, TransientDestinationError):
            stopped = str(answer)
            errors = [stopped] * n
        else:
            requests = max(1, len(answer))
            for span in answer:
                width = span.stop - span.start
                codes[span.start:span.stop] = [span.status_code] * width
                if span.error is not None:
                    status[span.start:span.stop] = [Outcome.REJECTED.value] * width
                    errors[span.start:span.stop] = [span.error] * width
                    continue
                status[span.start:span.stop] = [Outcome.DELIVERED.value] * width
                errors[span.start:span.stop] = [None] * width
                for i in range(span.start, span.stop) if span.rejected else ():
                    reason = span.rejected.get(keys[i])
                    if reason is not None:
                        status[i], errors[i] = Outcome.REJECTED.value, reason
        acks.read_at(rowids)
        acks.add_arrays(keys_arr, profiles, attempts, status, codes, errors, action)
        delivered = status.count(Outcome.DELIVERED.value)
        rejected = status.count(Outcome.REJECTED.value)
        counts.delivered += delivered
        counts.rejected += rejected
        counts.retry += n - delivered - rejected
        counts.sent += n
        counts.requests += requests
        counts.by_action[action.value] = counts.by_action.get(action.value, 0) + n
        return stopped

    return _Job(n, _call(lambda: send_encoded(encoded)), finish)


def _record_job(
    batch: pa.RecordBatch,
    action: Action,
    destination: Destination,
    mapper: RecordMapper,
    acks: AckWriter,
    counts: DrainCounts,
    rowids: tuple[int | None, int | None],
) -> _Job | None:
    keys = batch.column(0).to_pylist()
    profiles = batch.column(1).to_pylist()
    attempts = batch.column(2).to_pylist()
    payloads = batch.column(3).to_pylist()
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
        acks.read_at(rowids)
        acks.add_batch(failed, failed_attempts, failed_results, action)
        counts.rejected += len(failed)
        counts.sent += len(failed)
    if not records:
        return None

    def finish(answer: Any) -> str | None:
        stopped: str | None = None
        if isinstance(answer, TransientDestinationError):
            stopped = str(answer)
            results: Sequence[RecordResult] = [
                RecordResult(r.idempotency_key, Outcome.RETRY, None, stopped) for r in records
            ]
        else:
            results = answer
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
        acks.read_at(rowids)
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

    return _Job(len(records), _call(lambda: destination.send_batch(records)), finish)
