"""The fast path in Dagster: one asset per journey and the micro-batch sensor that drives them.

`fastpath_sensor` runs the same `FastPath.step()` as the `headwater fastpath` worker
(journeys/runtime.py explains the lock they share). On each tick:
- if the worker holds the lock, the sensor does not step: the worker is doing the work in
  milliseconds; otherwise it steps until caught up (bounded well inside Dagster's 60 s
  evaluation limit), so nothing waits while the worker is down;
- either way it reads the journey decisions appended to the activity feed since its cursor and
  reports them as runless asset materializations of the journeys' assets (entries, sends,
  exits, cancellations, latency percentiles), so all fast-path activity shows in the UI
  whoever did it.
Cursor: the name of the last activity file reported (`{"feed": name}`); names sort in append
order, so a restarted daemon reports each file once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import duckdb
from dagster import (
    AssetKey,
    AssetMaterialization,
    AssetSpec,
    DefaultSensorStatus,
    MetadataValue,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from headwater import activity
from journeys.config import JourneysFile
from journeys.instances import StepResult
from journeys.runtime import FastPathBusyError, FastPathLocations, open_fastpath

SENSOR_NAME = "fastpath_sensor"
# A tick steps at most this long (Dagster cuts a sensor evaluation off after 60 s).
STEP_BUDGET_SECONDS = 40.0


def journey_asset_key(name: str) -> AssetKey:
    return AssetKey(["journey", name])


def journey_asset_specs(config: JourneysFile) -> list[AssetSpec]:
    return [
        AssetSpec(
            key=journey_asset_key(j.name),
            description=j.description or f"Journey {j.name}",
            group_name="journeys",
            kinds={"python"},
            metadata={
                "trigger": ", ".join(j.trigger.events) or f"audience {j.trigger.audience}",
                "steps": ", ".join(f"{s.name} (+{s.after})" for s in j.steps),
                "holdout_percent": j.holdout_percent,
            },
        )
        for j in config.journeys
    ]


def parse_cursor(cursor: str | None) -> str:
    return str(json.loads(cursor)["feed"]) if cursor else ""


def feed_since(folder: Path, after: str) -> tuple[list[Path], str]:
    """Journey-event files appended after the file named `after`, and the newest name."""
    activity.ensure_layout(folder)
    files = sorted(
        p for p in (folder / activity.JOURNEY_EVENTS).glob("*.parquet")
        if p.name != activity.SCHEMA_FILE and p.name > after
    )
    return files, (files[-1].name if files else after)


def summarize(files: Sequence[Path]) -> dict[str, dict[str, float | int | None]]:
    """Per journey: counts per decision and step-send latency percentiles (ms)."""
    if not files:
        return {}
    paths = ", ".join("'" + str(p).replace("'", "''") + "'" for p in files)
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"""with e as (
                select distinct on (event_id) * from read_parquet([{paths}])
            )
            select journey,
                count(*) filter (where event = 'entered'),
                count(*) filter (where event = 'restarted'),
                count(*) filter (where event = 'step_sent'),
                count(*) filter (where event in ('step_skipped', 'step_held_out',
                                                 'step_capped')),
                count(*) filter (where event = 'step_failed'),
                count(*) filter (where event in ('exited', 'step_cancelled')),
                quantile_cont(latency_ms, 0.5), quantile_cont(latency_ms, 0.95),
                quantile_cont(latency_ms, 0.99)
            from e group by journey order by journey"""
        ).fetchall()
    finally:
        con.close()
    names = ("entered", "restarted", "sent", "not_sent", "failed", "exited_or_cancelled",
             "latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
    return {r[0]: dict(zip(names, r[1:], strict=True)) for r in rows}


def build_fastpath_sensor(
    locations: FastPathLocations, config: JourneysFile,
    default_status: DefaultSensorStatus = DefaultSensorStatus.STOPPED,
):  # noqa: ANN201 - dagster's decorated type
    keys = [journey_asset_key(j.name) for j in config.journeys]

    @sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=5,
        default_status=default_status,
        asset_selection=keys or None,
        description=(
            "Runs the fast-path micro-batch step when the `headwater fastpath` worker is not "
            "running, and reports every journey decision (worker's or its own) as asset events."
        ),
    )
    def _sensor(context: SensorEvaluationContext) -> SensorResult:
        driver = "sensor"
        totals = StepResult()
        try:
            with open_fastpath(locations) as fast:
                deadline = time.monotonic() + STEP_BUDGET_SECONDS
                while time.monotonic() < deadline:
                    one = fast.step()
                    totals.add(one)
                    if not one.active:
                        break
        except FastPathBusyError:
            driver = "worker"
        files, newest = feed_since(locations.activity, parse_cursor(context.cursor))
        summary = summarize(files)
        events = [
            AssetMaterialization(
                asset_key=journey_asset_key(name),
                description=f"fast-path activity ({driver} driving)",
                metadata={
                    **{k: MetadataValue.float(float(v)) if isinstance(v, float)
                       else MetadataValue.int(int(v)) for k, v in stats.items() if v is not None},
                    "driver": driver,
                    "feed_files": len(files),
                },
            )
            for name, stats in summary.items()
            if name in {j.name for j in config.journeys}
        ]
        cursor = json.dumps({"feed": newest})
        if not events:
            return SensorResult(
                skip_reason=SkipReason(
                    f"no new journey activity ({driver} driving; {totals.events} events read)"
                ),
                cursor=cursor,
            )
        return SensorResult(asset_events=events, cursor=cursor)

    return _sensor
