"""Running one sync: lock, recover, plan the diff into the outbox, drain it, fold the answers.

    con = duckdb.connect("warehouse/headwater.duckdb")
    sync = find_sync(load_syncs(Path("dbt_project/syncs.yml")), "cart_abandonment_email")
    result = run_sync(con, sync, lock_dir=Path("warehouse"),
                      activity_dir=Path("warehouse/activity"))

A run is made of passes, each recorded in headwater_state.sync_runs:
1. recovery: a plan a crash left half-written is deleted; passes a crash left unfinished are
   folded (the answers they recorded were applied with them; older versions' are applied);
2. resume: intents still pending (crash, replayed dead letters, destination down last time)
   are sent again with their original idempotency keys;
3. sync: the diff is written to the outbox (in bounded transactions, the last of which
   commits the plan: a plan a killed run left half-written is deleted by the next run and made
   again, plan.write_plan), then drained and folded (only the members changed since the last
   plan are compared when the audience is a published snapshot with a change log:
   `change_log`, activations/diff.py), a page of intents at a time (activations/outbox.py);
4. export: the delivery records of finished passes go to the activity feed (when given one).
The caller owns the DuckDB connection, so `headwater_state` may live in the warehouse file or
in an attached database without any change here.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import duckdb

from activations import diff as diff_sql
from activations import plan as plan_sql
from activations import state
from activations.activity_export import export_deliveries
from activations.caps import CapLedger, CappedDestination
from activations.config import (
    Mode,
    RateLimit,
    RetryPolicy,
    SyncConfigError,
    SyncSpec,
    resolve_destination,
)
from activations.destinations import destination_class
from activations.destinations.base import Action, Channel, Destination, DestinationConfigError
from activations.http import HttpClient, HttpSettings
from activations.lock import SyncLock
from activations.outbox import DrainCounts, ProgressFn, RecordMapper, drain, pending_count
from activations.templates import CompiledTemplates, TemplateRenderError, compile_templates

_MODE_ACTIONS: dict[Mode, frozenset[Action]] = {
    Mode.UPSERT: frozenset({Action.ADD, Action.UPDATE}),
    Mode.MIRROR: frozenset({Action.ADD, Action.UPDATE, Action.REMOVE}),
    Mode.APPEND: frozenset({Action.SEND}),
}


@dataclass
class SyncResult:
    """What a run did; `ok` is False when it stopped early or left records undelivered."""

    sync_name: str
    dry_run: bool
    full_resync: bool
    planned: dict[str, int] = field(default_factory=dict)
    resumed: int = 0
    revived: int = 0
    superseded: int = 0
    # True when the plan compared only the change log's candidates, not the whole audience.
    incremental: bool = False
    delivered: int = 0
    rejected: int = 0
    dead: int = 0
    pending: int = 0
    requests: int = 0
    seconds: float = 0.0
    stopped: str | None = None
    run_ids: list[str] = field(default_factory=list)
    # dry run: a few rendered records, to eyeball templates before anything is sent
    sample: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.stopped is None and not (self.rejected or self.dead or self.pending)


@dataclass(frozen=True)
class PreparedSync:
    spec: SyncSpec
    plan: diff_sql.SyncPlan
    mapper: RecordMapper
    destination_cls: Any


def consent_channel(kind: str, cls: Any, declared: Channel | None) -> Channel:
    """The channel the consent gate checks: the destination's own, or the declared one for
    destinations without one (webhooks). ValueError says what to declare."""
    channel = declared or cls.channel
    if channel is None:
        raise ValueError(
            f"destination kind {kind!r} reaches no fixed channel; declare "
            "`channel: email|sms|ads|none` so the consent gate knows which consent to require"
        )
    if cls.channel is not None and declared is not None and declared != cls.channel:
        raise ValueError(
            f"{kind} is a {cls.channel.value} destination; remove `channel:` or set it to "
            f"{cls.channel.value}"
        )
    return channel


def prepare(con: duckdb.DuckDBPyConnection, spec: SyncSpec) -> PreparedSync:
    """Validate a sync against its destination and its audience's columns; compile templates."""
    cls = destination_class(spec.destination.kind)
    try:
        channel = consent_channel(spec.destination.kind, cls, spec.channel)
    except ValueError as exc:
        raise SyncConfigError(f"sync {spec.name}, field channel: {exc}") from None
    if channel == Channel.ADS and spec.mode == Mode.UPSERT:
        raise SyncConfigError(
            f"sync {spec.name}, field mode: an ads sync must be `mirror` so that a consent "
            "withdrawal removes the member from the ad audience"
        )
    unsupported = _MODE_ACTIONS[spec.mode] - cls.supported_actions
    if unsupported:
        raise SyncConfigError(
            f"sync {spec.name}, field mode: {spec.destination.kind} does not support mode "
            f"{spec.mode.value} (needs {', '.join(sorted(unsupported))}); supported actions: "
            f"{', '.join(sorted(a.value for a in cls.supported_actions))}"
        )
    templates = compile_templates(spec.name, spec.templates)
    available = diff_sql.audience_columns(con, spec.audience)
    where: dict[str, str] = {}
    for section in ("identifiers", "fields"):
        for dest, column in getattr(spec, section).items():
            where.setdefault(column, f"{section}.{dest}")
    for var in sorted(templates.variables):
        where.setdefault(var, f"a template variable in templates ({', '.join(spec.templates)})")
    payload = list(dict.fromkeys([*spec.source_columns, *sorted(templates.variables)]))
    plan = diff_sql.SyncPlan(
        sync_name=spec.name,
        audience=spec.audience,
        mode=spec.mode,
        channel=channel,
        identifier_columns=tuple(dict.fromkeys(spec.identifiers.values())),
        payload_columns=tuple(payload),
    )
    diff_sql.check_columns(plan, available, where)
    mapper = RecordMapper(columns={**spec.identifiers, **spec.fields}, templates=templates)
    return PreparedSync(spec, plan, mapper, cls)


def http_client(
    retry: RetryPolicy, rate: RateLimit | None, default_rate: tuple[float, int] | None
) -> HttpClient:
    """The HTTP layer for one destination: declared retries, and the declared rate limit or the
    destination's default. Syncs and journey steps build theirs here."""
    return HttpClient(
        HttpSettings(
            total_retries=retry.total,
            backoff_factor=retry.backoff_factor,
            backoff_max=retry.backoff_max,
            backoff_jitter=retry.backoff_jitter,
            timeout_seconds=retry.timeout_seconds,
            rate=rate.requests_per_second if rate else (default_rate[0] if default_rate else None),
            burst=rate.burst if rate else (default_rate[1] if default_rate else 1),
        )
    )


def build_destination(
    prepared: PreparedSync, environ: Mapping[str, str] | None = None
) -> tuple[Destination, HttpClient]:
    spec = prepared.spec
    cls = prepared.destination_cls
    config = resolve_destination(spec, cls.default_base_url, environ)
    http = http_client(spec.retry, spec.rate_limit, cls.default_rate_limit)
    try:
        return cls(config, http), http
    except DestinationConfigError as exc:
        http.close()
        raise SyncConfigError(f"sync {spec.name}: {exc}") from None


def run_sync(
    con: duckdb.DuckDBPyConnection,
    spec: SyncSpec,
    *,
    lock_dir: Path,
    full_resync: bool = False,
    dry_run: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
    environ: Mapping[str, str] | None = None,
    destination: Destination | None = None,
    ack_flush_rows: int = 20_000,
    activity_dir: Path | None = None,
    caps: CapLedger | None = None,
    change_log: diff_sql.ChangeLog | None = None,
) -> SyncResult:
    """Run one sync to completion (or until the destination stops answering).

    `destination` overrides the client built from syncs.yml (for embedding; tests use real
    clients against local servers). `progress(phase, done, total)` is called after each batch.
    `activity_dir`: the activity feed folder (headwater.activity.activity_dir) to which the
    delivery records of every finished pass not yet exported are appended; None exports
    nothing (they are exported by the next run that is given a folder).
    `caps`: the frequency-cap ledger shared with journeys; an append-mode sync on a capped
    channel reserves every message against it (activations/caps.py).
    `change_log`: the published snapshots `con`'s audience views read (the same manifest); the
    diff then reads only what changed since the sync's last plan when it can. None compares
    the whole audience (and forgets the sync's cursor).
    """
    started = time.monotonic()
    prepared = prepare(con, spec)
    if full_resync and spec.mode == Mode.APPEND:
        raise SyncConfigError(
            f"sync {spec.name}: --full-resync would send every message of an append-mode sync "
            "again; it is refused. Replay dead letters or change the audience instead."
        )
    result = SyncResult(spec.name, dry_run=dry_run, full_resync=full_resync)
    if dry_run:
        _dry_run(con, prepared, full_resync, change_log, result)
        result.seconds = time.monotonic() - started
        return result
    http: HttpClient | None = None
    with SyncLock(lock_dir, spec.name):
        state.ensure_state(con, spec.name)
        # Before anything can be sent: a plan a killed run left half-written is made again.
        state.discard_partial_plans(con, spec.name)
        crashed = state.unfinished_passes(con, spec.name)
        state.fold(con, spec.name, crashed, spec.max_attempts, "crashed",
                   "finished by the next run after a crash")
        if destination is None:
            destination, http = build_destination(prepared, environ)
        channel = prepared.plan.channel
        if caps is not None and spec.mode == Mode.APPEND and channel.value in caps.caps:
            # A Destination by shape; its vendor attributes are copied per instance.
            destination = cast(Destination, CappedDestination(destination, caps, channel,
                                                              f"sync:{spec.name}"))
        try:
            _passes(con, prepared, destination, full_resync, progress, ack_flush_rows, result,
                    change_log)
        finally:
            if http is not None:
                http.close()
        # Once in a while (activations/state.py): the log of deliveries joins the base.
        state.compact_state(con, spec.name)
        if activity_dir is not None:
            # Still under the lock: this process holds the state, so it is the one that can
            # copy what was delivered to the feed dbt reads (activations/activity_export.py).
            export_deliveries(con, spec.name, prepared.plan.channel.value,
                              spec.destination.kind, activity_dir)
    return _finish(result, started)


def _passes(
    con: duckdb.DuckDBPyConnection, prepared: PreparedSync, destination: Destination,
    full_resync: bool, progress: Callable[[str, int, int], None] | None, ack_flush_rows: int,
    result: SyncResult, change_log: diff_sql.ChangeLog | None,
) -> None:
    """Resume what is pending, then plan and deliver the diff (unless the resume stopped)."""
    spec = prepared.spec
    resume_id: str | None = None
    if pending_count(con, spec.name):
        resume_id = _new_run_id()
        counts = _pass(con, prepared, destination, resume_id, "resume", full_resync,
                       progress, ack_flush_rows, result)
        result.resumed = counts.sent
        if counts.stopped:
            return
    run_id = _new_run_id()
    state.start_pass(con, run_id, spec.name, "sync", spec.mode.value, full_resync)
    result.run_ids.append(run_id)
    planned = plan_sql.write_plan(con, prepared.plan, run_id, full_resync, resume_id,
                                  change_log)
    result.planned = planned.by_action
    result.incremental = planned.incremental
    result.revived = planned.revived
    result.superseded = planned.superseded
    _drain_and_fold(con, prepared, destination, run_id, progress, ack_flush_rows, result)


def _pass(
    con: duckdb.DuckDBPyConnection, prepared: PreparedSync, destination: Destination,
    run_id: str, kind: str, full_resync: bool, progress: Callable[[str, int, int], None] | None,
    ack_flush_rows: int, result: SyncResult,
) -> DrainCounts:
    state.start_pass(con, run_id, prepared.spec.name, kind, prepared.spec.mode.value, full_resync)
    result.run_ids.append(run_id)
    return _drain_and_fold(con, prepared, destination, run_id, progress, ack_flush_rows, result,
                           phase=kind)


def _drain_and_fold(
    con: duckdb.DuckDBPyConnection, prepared: PreparedSync, destination: Destination,
    run_id: str, progress: Callable[[str, int, int], None] | None, ack_flush_rows: int,
    result: SyncResult, phase: str = "sync",
) -> DrainCounts:
    spec = prepared.spec
    batch = min(spec.batch_size, prepared.destination_cls.max_batch_size)
    report: ProgressFn | None = None
    if progress is not None:
        def report(done: int, total: int) -> None:
            progress(phase, done, total)
    # The answers are applied as they are recorded, a page at a time (outbox.drain).
    counts = drain(con, spec.name, run_id, destination, prepared.mapper, batch, report,
                   ack_flush_rows, spec.max_attempts)
    folded = counts.folded
    state.close_pass(con, spec.name, run_id, "stopped" if counts.stopped else "finished",
                     counts.stopped, folded)
    result.delivered += folded.delivered
    result.rejected += folded.rejected
    result.dead += folded.dead
    result.pending = state.outbox_counts(con, spec.name).get("pending", 0)
    result.requests += counts.requests
    if counts.stopped:
        result.stopped = counts.stopped
    return counts


def _dry_run(
    con: duckdb.DuckDBPyConnection, prepared: PreparedSync, full_resync: bool,
    change_log: diff_sql.ChangeLog | None, result: SyncResult, sample_size: int = 5,
) -> None:
    """Count the diff and render a few records; write nothing but temp tables."""
    plan = prepared.plan
    changes = None if full_resync else diff_sql.changes_since_cursor(con, plan, change_log)
    result.planned = diff_sql.compute_diff(con, plan, full_resync, changes)
    result.incremental = changes is not None
    payload = diff_sql.json_object_sql(plan.payload_columns)
    rows = con.execute(
        f"""select d.profile_id, d.action, {payload} from hw_diff d
        join {diff_sql.rows_relation(plan, full_resync, changes)} a
          on cast(a.profile_id as varchar) = d.profile_id
        where d.action in ('add', 'update', 'send') limit {int(sample_size)}"""
    ).fetchall()
    diff_sql.drop_plan_tables(con)
    import json

    for profile_id, action, raw in rows:
        row = json.loads(raw)
        try:
            fields: Any = prepared.mapper.fields(row)
        except TemplateRenderError as exc:
            fields = {"error": str(exc)}
        result.sample.append({"profile_id": profile_id, "action": action, "fields": fields})


def _finish(result: SyncResult, started: float) -> SyncResult:
    result.seconds = time.monotonic() - started
    return result


def _new_run_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


__all__ = [
    "CompiledTemplates",
    "PreparedSync",
    "SyncResult",
    "build_destination",
    "prepare",
    "run_sync",
]
