"""Freshness checks on raw landing, sync run metadata on failure, and webhook alerts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import (
    DagsterEventType,
    build_run_status_sensor_context,
    build_sensor_context,
    materialize,
)
from orch_world import World

from orchestration.observability import alert_on_check_failure, alert_on_run_failure
from orchestration.resources import HeadwaterResource
from orchestration.syncs import sync_asset_key


@pytest.fixture
def stalled_events() -> Iterator[None]:
    # Any positive lag is too much: the freshest event landed before "now".
    os.environ["HEADWATER_MAX_LAG_MINUTES_EVENTS"] = "0"
    yield
    os.environ.pop("HEADWATER_MAX_LAG_MINUTES_EVENTS", None)


def test_stalled_landing_warns_and_alerts_once(built: World, stalled_events: None) -> None:
    # The alert sensor's first tick only places its cursor after past evaluations.
    start = alert_on_check_failure(
        build_sensor_context(instance=built.instance, resources=built.resources())
    )
    assert start.cursor is not None
    job = built.defs.resolve_job_def("raw_freshness_checks")
    result = job.execute_in_process(instance=built.instance, resources=built.resources())
    assert result.success  # WARN checks never fail the run
    evaluations = {
        e.asset_check_evaluation_data.asset_key.to_user_string(): e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_CHECK_EVALUATION
    }
    assert not evaluations["raw/events"].passed
    assert evaluations["raw/events"].metadata["read_from"].value == "published manifest"
    assert evaluations["raw/consent"].passed  # 7 days allowed, the world is fresh

    before = len(built.receiver.bodies("/alerts"))
    context = build_sensor_context(
        instance=built.instance, resources=built.resources(), cursor=start.cursor
    )
    first = alert_on_check_failure(context)
    alerts = built.receiver.bodies("/alerts")[before:]
    assert {"kind": "check_failure", "asset": "raw/events", "check": "landing_freshness"}.items() \
        <= next(a for a in alerts if a["asset"] == "raw/events").items()
    assert all(a["asset"] != "raw/consent" for a in alerts)
    # The cursor moved past them: the next tick sends nothing again.
    again = build_sensor_context(
        instance=built.instance, resources=built.resources(), cursor=first.cursor
    )
    alert_on_check_failure(again)
    assert len(built.receiver.bodies("/alerts")) == before + len(alerts)


def test_failed_sync_run_keeps_counts_and_alerts(built: World, tmp_path: Path) -> None:
    # The destination is down (nothing listens there): the engine stops, the run fails.
    # A state file of its own, so the undelivered intents do not leak into other tests.
    resources = built.resources()
    resources["headwater"] = HeadwaterResource(
        duckdb_path=str(built.warehouse),
        state_path=str(tmp_path / "state.duckdb"),
        syncs_file=built.env["HEADWATER_SYNCS_FILE"],
    )
    os.environ["HEADWATER_WEBHOOK_BASE_URL"] = "http://127.0.0.1:9"
    try:
        result = materialize(
            [built.defs.get_assets_def(sync_asset_key("winback_hook"))],
            resources=resources,
            instance=built.instance,
            raise_on_error=False,
        )
    finally:
        os.environ["HEADWATER_WEBHOOK_BASE_URL"] = built.receiver.url
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    run = built.instance.get_run_by_id(result.run_id)
    assert run is not None
    before = len(built.receiver.bodies("/alerts"))
    context = build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=built.instance,
        dagster_run=run,
        dagster_event=failure,
        resources=built.resources(),
    ).for_run_failure()
    alert_on_run_failure(context)
    (alert,) = built.receiver.bodies("/alerts")[before:]
    assert alert["kind"] == "run_failure" and alert["run_id"] == result.run_id
