"""An audience sensor tick at 1M and at 10M events, with the same number of new rows.

For each size (1M and 10M events; --quick: 100k and 1M), in a fresh folder:
1. land `raw.events` (one profile per 100 events, received_at in landing order);
2. derive the audience from the events in SQL, the way a dbt build would (one row per profile
   with a cart event: profile_id, email, first_name, email_consent). The real dbt project is
   not run at 10M events because it takes many minutes on two cores; what the tick reads (the
   published snapshot, its change log and the sync state) has the same shape either way;
3. publish (headwater.snapshots.publish) and deliver the whole audience with the real sync
   engine to a webhook receiver on 127.0.0.1, so the sync state holds every member;
4. land NEW_ROWS new events (NEW_ROWS new profiles qualify), rebuild the audience, publish.
Then time the real sensor (orchestration.sensors, evaluated with build_sensor_context):
- zero_copy_ms: a tick with its cursor at the previous publish: reads the manifest, the change
  file and the state rows of the changed profiles;
- full_compare_ms (baseline, same run): a tick without a cursor, which runs the engine's full
  diff of the audience against the state (what a sensor without a change log must do).
Median of REPEATS ticks each. ratio_vs_small = tick at this size / tick at the small size
(target for zero_copy: <= 1.5). Both ticks must request the same run (they find a difference).

    python -m benchmarks sensor --quick
    python -m benchmarks sensor
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import yaml
from dagster import DagsterInstance, SensorResult, build_sensor_context

from activations.config import parse_syncs
from activations.engine import run_sync
from headwater import snapshots
from headwater.config import Settings
from headwater.warehouse import create_raw_tables, scalar
from orchestration.resources import HeadwaterResource, Locations, reader_connection
from orchestration.sensors import build_audience_sensor

NEW_ROWS = 1_000
EVENTS_PER_PROFILE = 100
REPEATS = 7
SECRET_ENV = "HW_BENCH_SENSOR_SECRET"

AUDIENCE_SQL = """
create or replace table main.audience_bench as
select user_id as profile_id,
       user_id || '@example.com' as email,
       'name_' || user_id as first_name,
       true as email_consent
from raw.events
group by user_id
having count(*) filter (where event = 'Product Added') > 0
"""


class _Receiver(ThreadingHTTPServer):
    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"


def _land_events(con: duckdb.DuckDBPyConnection, start: int, count: int, users: int) -> None:
    """`count` events numbered from `start`; event i belongs to user i % users."""
    con.execute(
        f"""insert into raw.events (message_id, type, event, user_id, "timestamp", received_at)
        select 'm' || i, 'track',
               case when i % 7 = 0 then 'Product Added' else 'Page Viewed' end,
               'u' || (i % {users}),
               timestamp '2026-01-01' + to_microseconds(i * 1000),
               timestamp '2026-01-01' + to_microseconds(i * 1000)
        from range({start}, {start + count}) t(i)"""
    )


def _world(folder: Path, events: int, receiver: _Receiver) -> tuple[Locations, Any, int]:
    warehouse = folder / "headwater.duckdb"
    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(warehouse)})
    users = events // EVENTS_PER_PROFILE
    con = duckdb.connect(str(warehouse))
    create_raw_tables(con)
    _land_events(con, 0, events, users)
    con.execute(AUDIENCE_SQL)
    con.close()
    syncs = folder / "syncs.yml"
    syncs.write_text(yaml.safe_dump({"syncs": [{
        "name": "bench_hook", "audience": "audience_bench", "mode": "mirror",
        "channel": "email", "identifiers": {"email": "email"},
        "fields": {"first_name": "first_name"}, "batch_size": 10_000,
        "destination": {"kind": "webhook", "base_url": receiver.url,
                        "credentials": {"signing_secret": SECRET_ENV}},
    }]}))
    (spec,) = parse_syncs(yaml.safe_load(syncs.read_text()))
    locations = Locations.from_env(
        {"HEADWATER_DUCKDB_PATH": str(warehouse), "HEADWATER_SYNCS_FILE": str(syncs)}
    )
    snapshots.publish(settings)
    environ = {SECRET_ENV: "bench-secret"}
    with reader_connection(locations) as (con, _):
        result = run_sync(con, spec, lock_dir=folder, environ=environ)
    assert result.ok and result.delivered > 0, result
    # New rows: NEW_ROWS events from NEW_ROWS new profiles, each a cart event, then rebuild.
    con = duckdb.connect(str(warehouse))
    con.execute(
        f"""insert into raw.events (message_id, type, event, user_id, "timestamp", received_at)
        select 'new' || i, 'track', 'Product Added', 'new_u' || i, now(), now()
        from range({NEW_ROWS}) t(i)"""
    )
    con.execute(AUDIENCE_SQL)
    audience_rows = scalar(con, "select count(*) from audience_bench")
    con.close()
    manifest = snapshots.publish(settings)
    assert manifest.models["audience_bench"].changes[-1].upserts == NEW_ROWS
    return locations, spec, int(audience_rows)


def _time_ticks(locations: Locations, spec: Any, cursor: str | None) -> float:
    sensor = build_audience_sensor(spec)
    resources = {"headwater": HeadwaterResource(
        duckdb_path=str(locations.settings.duckdb_path),
        state_path=str(locations.state_path),
        syncs_file=str(locations.syncs_file),
    )}
    samples = []
    with DagsterInstance.ephemeral() as instance:
        for _ in range(REPEATS):
            context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            started = time.perf_counter()
            result = sensor(context)
            samples.append(time.perf_counter() - started)
            assert isinstance(result, SensorResult), result
            assert len(result.run_requests or []) == 1, result  # the new members differ
    return statistics.median(samples) * 1000


def run(quick: bool) -> list[dict[str, Any]]:
    import os

    os.environ.setdefault(SECRET_ENV, "bench-secret")
    sizes = [100_000, 1_000_000] if quick else [1_000_000, 10_000_000]
    rows: list[dict[str, Any]] = []
    receiver = _Receiver()
    try:
        for events in sizes:
            with tempfile.TemporaryDirectory(prefix="hw-bench-sensor-") as tmp:
                locations, spec, audience_rows = _world(Path(tmp), events, receiver)
                zero_copy = _time_ticks(locations, spec, json.dumps({"seq": 1}))
                full = _time_ticks(locations, spec, None)
            rows.append({
                "events": events,
                "audience_rows": audience_rows,
                "new_rows": NEW_ROWS,
                "zero_copy_ms": zero_copy,
                "full_compare_ms": full,
            })
    finally:
        receiver.shutdown()
        receiver.server_close()
    small = rows[0]
    for row in rows:
        row["zero_copy_ratio_vs_small"] = row["zero_copy_ms"] / small["zero_copy_ms"]
        row["full_compare_ratio_vs_small"] = row["full_compare_ms"] / small["full_compare_ms"]
    rows[-1]["target_zero_copy_ratio"] = 1.5
    return rows
