"""Freshness checks on the raw landing tables, and alerts for failed runs and checks.

Freshness: the newest landing time of each raw table (`received_at` for events) against a
maximum lag. The check reads the landing times that every publish records in the manifest and
never opens the warehouse: a read-only open that happens at the instant `dbt build` opens the
file makes the build fail ("Could not set lock", measured here), and the checks run on a
schedule that knows nothing of builds. The price: landing is seen as of the last build, so a
stall is reported within one build interval plus the lag, and stalled builds are reported too.
"""


import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import cast

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    AssetSelection,
    AssetSpec,
    DagsterEventType,
    DefaultSensorStatus,
    EventRecordsFilter,
    RunFailureSensorContext,
    ScheduleDefinition,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    define_asset_job,
    multi_asset_check,
    run_failure_sensor,
    sensor,
)

from headwater import snapshots
from orchestration.resources import AlertWebhook, HeadwaterResource

FRESHNESS_CHECK = "landing_freshness"
# Default maximum lag per raw table; HEADWATER_MAX_LAG_MINUTES_<TABLE> overrides one.
DEFAULT_MAX_LAG_MINUTES: dict[str, int] = {
    "events": 60,
    "orders": 24 * 60,
    "crm_contacts": 24 * 60,
    "consent": 7 * 24 * 60,
}
# Checks evaluated per alert tick at most; the rest wait for the next tick (cursor-based).
ALERT_BATCH = 200


def raw_asset_key(table: str) -> AssetKey:
    # dagster-dbt's key for dbt source `raw.<table>`: [source name, table name].
    return AssetKey(["raw", table])


def raw_source_specs() -> list[AssetSpec]:
    """The landing tables, so the checks have assets to hang on (loaders materialize them)."""
    return [
        AssetSpec(
            raw_asset_key(table),
            group_name="raw",
            kinds={"duckdb"},
            description=f"raw.{table}: landed by your loaders; `{column}` says when.",
        )
        for table, column in snapshots.LANDING_COLUMNS.items()
    ]


def max_lag(table: str) -> timedelta:
    env = os.environ.get(f"HEADWATER_MAX_LAG_MINUTES_{table.upper()}")
    return timedelta(minutes=float(env) if env else DEFAULT_MAX_LAG_MINUTES[table])


@multi_asset_check(
    specs=[
        AssetCheckSpec(
            FRESHNESS_CHECK,
            asset=raw_asset_key(t),
            description=f"Warns when nothing landed in raw.{t} for longer than its maximum lag.",
        )
        for t in snapshots.LANDING_COLUMNS
    ],
    can_subset=True,
)
def raw_landing_freshness(
    context: AssetCheckExecutionContext, headwater: HeadwaterResource
) -> Iterator[AssetCheckResult]:
    locations = headwater.locations()
    manifest = snapshots.read_manifest(locations.published_dir)
    landing = manifest.landing if manifest else {}
    source = "published manifest"
    now = datetime.now(UTC).replace(tzinfo=None)
    selected = {k.asset_key for k in context.selected_asset_check_keys}
    for table in snapshots.LANDING_COLUMNS:
        key = raw_asset_key(table)
        if key not in selected:
            continue
        latest = landing.get(table)
        limit = max_lag(table)
        if latest is None:
            passed, lag_minutes = False, None
        else:
            lag = now - datetime.fromisoformat(latest).replace(tzinfo=None)
            passed, lag_minutes = lag <= limit, round(lag.total_seconds() / 60, 1)
        yield AssetCheckResult(
            asset_key=key,
            check_name=FRESHNESS_CHECK,
            passed=passed,
            severity=AssetCheckSeverity.WARN,
            metadata={
                "latest_landed_at": latest or "never",
                "lag_minutes": lag_minutes if lag_minutes is not None else -1,
                "max_lag_minutes": limit.total_seconds() / 60,
                "read_from": source,
            },
        )


freshness_job = define_asset_job(
    "raw_freshness_checks",
    selection=AssetSelection.checks_for_assets(
        *[raw_asset_key(t) for t in snapshots.LANDING_COLUMNS]
    ),
)
freshness_schedule = ScheduleDefinition(
    name="raw_freshness_schedule", job=freshness_job, cron_schedule="*/15 * * * *"
)


@run_failure_sensor(name="alert_on_run_failure", default_status=DefaultSensorStatus.RUNNING)
def alert_on_run_failure(context: RunFailureSensorContext, alerts: AlertWebhook) -> None:
    """POST every failed run to HEADWATER_ALERT_WEBHOOK_URL (if set)."""
    run = context.dagster_run
    alerts.notify(
        {
            "kind": "run_failure",
            "job": run.job_name,
            "run_id": run.run_id,
            "tags": dict(run.tags),
            "message": context.failure_event.message,
        }
    )


def _alert_on_check_failure(context: SensorEvaluationContext, alerts: AlertWebhook) -> SensorResult:
    """POST every failed asset check (dbt tests, freshness, delivery) once.

    The cursor is the event log's storage id of the last evaluation handled; a failed POST
    raises, so the tick fails and the same evaluations are sent next tick. The first tick
    starts after the newest evaluation: turning alerts on does not replay history.
    """
    check_events = EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION)
    if not context.cursor:
        latest = context.instance.get_event_records(check_events, limit=1, ascending=False)
        start = str(latest[0].storage_id) if latest else "0"
        return SensorResult(skip_reason=SkipReason(f"alerts start after {start}"), cursor=start)
    records = context.instance.get_event_records(
        EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION,
            after_cursor=int(context.cursor),
        ),
        limit=ALERT_BATCH,
        ascending=True,
    )
    if not records:
        return SensorResult(skip_reason=SkipReason("no new check evaluations"))
    sent = 0
    for record in records:
        event = record.event_log_entry.dagster_event
        # The records are filtered on ASSET_CHECK_EVALUATION: their data is the evaluation.
        data = cast(AssetCheckEvaluation, event.event_specific_data if event else None)
        if data is None:
            continue
        if data.passed:
            continue
        alerts.notify(
            {
                "kind": "check_failure",
                "asset": data.asset_key.to_user_string(),
                "check": data.check_name,
                "severity": data.severity.value,
                "run_id": record.event_log_entry.run_id,
                "description": data.description,
            }
        )
        sent += 1
    cursor = str(records[-1].storage_id)
    if not sent:
        return SensorResult(skip_reason=SkipReason("all new checks passed"), cursor=cursor)
    return SensorResult(cursor=cursor)


alert_on_check_failure: SensorDefinition = sensor(
    name="alert_on_check_failure",
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="POSTs failed asset checks to HEADWATER_ALERT_WEBHOOK_URL (if set).",
)(_alert_on_check_failure)
