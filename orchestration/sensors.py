"""Audience sensors: request a sync run exactly when its audience differs from what was sent.

Zero-copy: a tick reads the published manifest, the change files written after its cursor and,
for the profiles in them only, the sync's delivered state. It never scans an audience, the
events or the warehouse file, so its cost follows the rows that changed and it runs while
`dbt build` holds the warehouse (headwater/snapshots.py explains the layout).

Cursor semantics. The cursor is the publish seq up to which this sync's audience changes have
been judged (JSON `{"seq": n}`). A tick that finds changes after it:
- computes, in SQL, whether any changed profile's desired row (after the consent gate and the
  identifier check, hashed the way the engine hashes it) differs from the sync's state;
- if so, requests a run with run key `<sync>:<seq>`; either way the cursor moves to the
  newest seq it judged.
Dagster stores the cursor with the tick's run requests, so a restarted daemon starts from the
last committed tick: changes after it are judged again (nothing is missed), and a request for
the same seq carries the same run key, which Dagster refuses to launch twice (nothing is
repeated). A tick that cannot read the state (a sync run holds it) leaves the cursor alone.
Without a cursor (first tick, or a reset), or when the change log no longer reaches back to
it, the tick runs the engine's own full diff once: correct, and paid only then.
"""


import json
from collections.abc import Sequence
from dataclasses import dataclass

import duckdb
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from activations import diff as diff_sql
from activations.config import Mode, SyncSpec
from activations.consent import consent_predicate
from activations.engine import prepare
from headwater import snapshots
from headwater.warehouse import WarehouseBusyError
from orchestration.resources import HeadwaterResource, reader_connection
from orchestration.syncs import sync_asset_key

# Dagster's daemon ticks every 5 s at best (DESIGN.md); asking for less only adds noise.
MIN_INTERVAL_SECONDS = 30


@dataclass(frozen=True)
class Judgement:
    """What one tick concluded for one sync."""

    seq: int  # the publish seq judged up to (the next cursor)
    differing: int  # profiles whose desired state differs from the delivered state
    changed: int  # change rows read (full: the audience size)
    full: bool  # True when the whole audience was compared (no usable cursor)


def sensor_name(sync_name: str) -> str:
    return f"audience_sensor__{sync_name}"


def parse_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    return int(json.loads(cursor)["seq"])


def judge(
    con: duckdb.DuckDBPyConnection,
    manifest: snapshots.Manifest,
    spec: SyncSpec,
    cursor_seq: int | None,
    published: object,
) -> Judgement:
    """Does the sync's audience differ from its delivered state after `cursor_seq`?"""
    audience = spec.audience.split(".")[-1]
    snap = manifest.models.get(audience)
    if snap is None:
        raise snapshots.SnapshotError(
            f"audience {audience} of sync {spec.name} is not published; build it first"
        )
    plan = prepare(con, spec).plan
    files = None if cursor_seq is None else manifest.changes_after(audience, cursor_seq)
    if files is None:
        counts = diff_sql.compute_diff(con, plan, full_resync=False)
        con.execute("drop table if exists hw_diff")
        return Judgement(manifest.seq, sum(counts.values()), snap.rows, full=True)
    if not files:
        return Judgement(manifest.seq, 0, 0, full=False)
    changes = snapshots.change_relation(files, published)  # type: ignore[arg-type]
    differing, read = con.execute(_changed_diff_sql(con, plan, changes)).fetchone() or (0, 0)
    return Judgement(manifest.seq, int(differing), int(read), full=False)


def _changed_diff_sql(con: duckdb.DuckDBPyConnection, plan: diff_sql.SyncPlan, changes: str) -> str:
    """The engine's diff (activations/diff.py), restricted to the profiles in `changes`.

    The latest change row per profile is its current audience row ('upsert') or its absence
    ('remove'), so the desired side needs no read of the snapshot.
    """
    ids = diff_sql.ids_present_sql(plan)
    state = diff_sql.state_sql(con, plan.sync_name)
    changed = "d.row_hash is distinct from s.row_hash"
    keep = f"d.profile_id is not null and {changed}" if plan.mode == Mode.UPSERT else changed
    return f"""
        with c as (select * from {changes}),
        latest as (
            select * from c
            qualify row_number() over (partition by profile_id order by {snapshots.SEQ} desc) = 1
        ),
        k as (select cast(profile_id as varchar) as profile_id from latest),
        d as (
            select cast(a.profile_id as varchar) as profile_id,
                   {diff_sql.row_hash_sql(plan.payload_columns)} as row_hash
            from latest a
            where a.{snapshots.CHANGE} = 'upsert' and {consent_predicate(plan.channel)} and {ids}
        )
        select count(*) filter (where {keep}), (select count(*) from c)
        from k
        left join d on d.profile_id = k.profile_id
        left join {state} s on s.profile_id = k.profile_id
    """


def build_audience_sensor(
    spec: SyncSpec, *, default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED
) -> SensorDefinition:
    key = sync_asset_key(spec.name)

    @sensor(
        name=sensor_name(spec.name),
        asset_selection=[key],
        minimum_interval_seconds=MIN_INTERVAL_SECONDS,
        default_status=default_status,
        description=(
            f"Runs sync {spec.name} when {spec.audience} differs from what {spec.destination.kind}"
            " holds, reading only the rows that changed since the last tick."
        ),
    )
    def _sensor(context: SensorEvaluationContext, headwater: HeadwaterResource) -> SensorResult:
        locations = headwater.locations()
        manifest = snapshots.read_manifest(locations.published_dir)
        if manifest is None:
            return SensorResult(skip_reason=SkipReason("nothing published yet: build first"))
        cursor_seq = parse_cursor(context.cursor)
        if cursor_seq is not None and cursor_seq >= manifest.seq:
            return SensorResult(skip_reason=SkipReason(f"no publish after seq {cursor_seq}"))
        try:
            with reader_connection(locations, manifest=manifest, state_read_only=True) as (
                con,
                _,
            ):
                verdict = judge(con, manifest, spec, cursor_seq, locations.published_dir)
        except WarehouseBusyError as exc:
            # A sync run holds the state: judge the same changes next tick (cursor unchanged).
            return SensorResult(skip_reason=SkipReason(f"state busy, retrying: {exc}"))
        next_cursor = json.dumps({"seq": verdict.seq})
        how = "whole audience" if verdict.full else f"{verdict.changed} change rows"
        if not verdict.differing:
            return SensorResult(
                skip_reason=SkipReason(f"seq {verdict.seq}: no difference ({how})"),
                cursor=next_cursor,
            )
        return SensorResult(
            run_requests=[
                RunRequest(
                    run_key=f"{spec.name}:{verdict.seq}",
                    asset_selection=[key],
                    tags={"headwater/sync": spec.name, "headwater/seq": str(verdict.seq)},
                )
            ],
            cursor=next_cursor,
        )

    return _sensor


def build_audience_sensors(
    specs: Sequence[SyncSpec], default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED
) -> list[SensorDefinition]:
    return [build_audience_sensor(s, default_status=default_status) for s in specs]
