"""From an SDK-shaped HTTP request to the collector, through the fast path, to a destination
stand-in; and the two drivers (worker and Dagster sensor) sharing one watermark."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from dagster import DagsterInstance, build_sensor_context
from journey_testkit import journeys_yaml

from activations.standins.meta import MetaStandin
from activations.standins.twilio import TwilioStandin
from activations.standins.webhook import WebhookStandin
from collector.config import CollectorConfig
from collector.server import Collector
from headwater.config import Settings
from journeys.config import load_journeys
from journeys.runtime import FastPathLocations, run_worker
from orchestration.fastpath import build_fastpath_sensor, journey_asset_key

WRITE_KEY = "e2e-write-key"
WELCOME = "/headwater/journeys/welcome"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    with WebhookStandin() as webhook, TwilioStandin() as twilio, MetaStandin() as meta:
        journeys = tmp_path / "journeys.yml"
        journeys.write_text(yaml.safe_dump(journeys_yaml(webhook.url, twilio.url, meta.url)))
        env = {
            "HEADWATER_DUCKDB_PATH": str(tmp_path / "warehouse" / "headwater.duckdb"),
            "HEADWATER_JOURNEYS_FILE": str(journeys),
            "HEADWATER_WEBHOOK_SECRET": webhook.config.secret,
            "TWILIO_ACCOUNT_SID": twilio.config.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.config.auth_token,
            "META_ACCESS_TOKEN": meta.config.access_token,
        }
        for name in [n for n in os.environ if n.startswith("HEADWATER_")]:
            monkeypatch.delenv(name)  # hermetic: nothing another test left behind
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        locations = FastPathLocations.from_settings(Settings.from_env())
        config = CollectorConfig.from_env({"HEADWATER_WRITE_KEY": WRITE_KEY}, port=0,
                                          landing_dir=locations.landing)
        with Collector(config) as collector:
            yield {"webhook": webhook, "collector": collector, "locations": locations}


def _post(url: str, *messages: dict[str, Any]) -> None:
    body = {"batch": list(messages), "sentAt": datetime.now(UTC).isoformat()}
    r = requests.post(url + "/v1/batch", json=body, auth=(WRITE_KEY, ""), timeout=10)
    assert r.status_code == 200, r.text


def _track(event: str, email: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "messageId": str(uuid.uuid4()),
            "anonymousId": f"anon-{email}", "timestamp": datetime.now(UTC).isoformat(),
            "context": {"traits": {"email": email, "first_name": "Ada"}},
            "properties": properties}


def _records(hook: WebhookStandin, path: str) -> list[dict[str, Any]]:
    return [r for m in hook.messages() if m.path == path for r in m.body["records"]]


def _wait(predicate: Any, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.01)
    raise AssertionError("timed out waiting")


def test_sdk_request_reaches_the_destination_through_the_worker(world: dict[str, Any]) -> None:
    hook, collector, locations = world["webhook"], world["collector"], world["locations"]
    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(locations,),
                              kwargs={"stop": stop, "flush_seconds": 0.1}, daemon=True)
    worker.start()
    try:
        _post(collector.url, _track("Signed Up", "Ada@Example.com"))
        _wait(lambda: len(_records(hook, WELCOME)) == 1)
        [record] = _records(hook, WELCOME)
        assert record["fields"]["email"] == "ada@example.com"
        assert record["fields"]["subject"] == "Welcome, Ada!"
        # A cart and its checkout: the journey starts and ends, nothing is sent.
        _post(collector.url, _track("Product Added", "bo@example.com", cart_id="c1", sku="A"),
              _track("Order Completed", "bo@example.com", cart_id="c1", order_id="o1"))
        time.sleep(0.3)
    finally:
        stop.set()
        worker.join(10)
    assert not worker.is_alive()
    feed = locations.activity / "journey_events"
    import duckdb

    rows = duckdb.connect().execute(
        f"select journey, event, latency_ms from read_parquet('{feed}/*.parquet') "
        "order by recorded_at"
    ).fetchall()
    assert ("cart_abandonment", "exited") in {(j, e) for j, e, _ in rows}
    [latency] = [ms for j, e, ms in rows if e == "step_sent"]
    assert latency is not None and 0 < latency < 10_000
    assert len(_records(hook, "/headwater/journeys/cart-email")) == 0


def test_sensor_steps_when_the_worker_is_down_and_reports_when_it_runs(
    world: dict[str, Any],
) -> None:
    hook, collector, locations = world["webhook"], world["collector"], world["locations"]
    config = load_journeys(locations.journeys_file)
    sensor = build_fastpath_sensor(locations, config)
    instance = DagsterInstance.ephemeral()

    _post(collector.url, _track("Signed Up", "one@example.com"))
    result = sensor(build_sensor_context(instance=instance))
    assert len(_records(hook, WELCOME)) == 1
    [event] = result.asset_events
    assert event.asset_key == journey_asset_key("welcome")
    assert event.metadata["driver"].value == "sensor" and event.metadata["sent"].value == 1
    cursor = result.cursor

    stop = threading.Event()
    worker = threading.Thread(target=run_worker, args=(locations,),
                              kwargs={"stop": stop, "flush_seconds": 0.05}, daemon=True)
    worker.start()
    try:
        _post(collector.url, _track("Signed Up", "two@example.com"))
        _wait(lambda: len(_records(hook, WELCOME)) == 2)
        time.sleep(0.3)  # the worker flushes its decisions to the feed
        result = sensor(build_sensor_context(instance=instance, cursor=cursor))
    finally:
        stop.set()
        worker.join(10)
    [event] = result.asset_events
    assert event.metadata["driver"].value == "worker" and event.metadata["sent"].value == 1
    # A tick with nothing new reports nothing, and nobody acted on an event twice.
    again = sensor(build_sensor_context(instance=instance, cursor=result.cursor))
    assert not again.asset_events
    assert sorted(hook.deliveries_by_key().values()) == [1, 1]
    assert json.loads(again.cursor)["feed"] >= json.loads(result.cursor)["feed"]
