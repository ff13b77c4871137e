"""The writer lock: sensors and sync runs keep working while a real `dbt build` holds the file.

A `dbt build` subprocess builds a larger generated world in a fresh warehouse file; the
published snapshots and sync state of the session world are copied next to it. While DuckDB's
lock on that file is held, a sensor is evaluated and a sync asset is materialized against the
same folder: both read published snapshots and the state file only.

The lock is observed in /proc/locks, never by opening the file: a read-only open that happens
at the instant dbt opens the warehouse makes dbt fail ("Could not set lock"), measured here.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import duckdb
from dagster import build_sensor_context, materialize
from orch_world import World

from headwater.config import Settings
from headwater.dbt import base_args
from headwater.demo.world import generate_world
from orchestration.resources import HeadwaterResource
from orchestration.syncs import sync_asset_key

SYNC = "cart_email_hook"


BIG_WORLD_CUSTOMERS = 3000


def _locked(path: Path) -> bool:
    """Whether some process holds a POSIX lock on the file (DuckDB's writer lock)."""
    inode = os.stat(path).st_ino
    with open("/proc/locks") as locks:
        return any(f":{inode} " in line for line in locks)


def test_sensor_and_sync_run_while_dbt_build_holds_the_warehouse(
    built: World, tmp_path: Path
) -> None:
    source = built.warehouse.parent
    copy = tmp_path / "warehouse"
    shutil.copytree(source / "published", copy / "published")
    if (source / "headwater_state.duckdb").exists():  # only once a sync test ran before
        shutil.copy(source / "headwater_state.duckdb", copy / "headwater_state.duckdb")
    warehouse = copy / "headwater.duckdb"
    # A world big enough that dbt holds the lock for longer than the checks below take.
    with duckdb.connect(str(warehouse)) as con:
        generate_world(con, customers=BIG_WORLD_CUSTOMERS, seed=5, as_of=datetime.now())
    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(warehouse)})
    env = {**os.environ, "HEADWATER_DUCKDB_PATH": str(warehouse)}
    dbt = str(Path(sys.executable).parent / "dbt")
    build = subprocess.Popen(
        [dbt, "build", *base_args(settings), "--target-path", str(tmp_path / "target"),
         "--log-path", str(tmp_path / "logs")],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while not _locked(warehouse):
            assert build.poll() is None, "dbt build ended before it took the lock"
            assert time.monotonic() < deadline, "dbt build never took the warehouse lock"
            time.sleep(0.2)

        resources = built.resources()
        resources["headwater"] = HeadwaterResource(
            duckdb_path=str(warehouse),
            state_path=str(copy / "headwater_state.duckdb"),
            syncs_file=built.env["HEADWATER_SYNCS_FILE"],
            published_dir=str(copy / "published"),
        )
        sensor = built.defs.get_sensor_def(f"audience_sensor__{SYNC}")
        tick = sensor(build_sensor_context(instance=built.instance, resources=resources,
                                           definitions=built.defs))
        assert tick.cursor is not None  # judged (no skip for a busy warehouse)
        assert _locked(warehouse) and build.poll() is None, "dbt must still hold the lock"
        result = materialize(
            [built.defs.get_assets_def(sync_asset_key(SYNC))],
            resources=resources,
            instance=built.instance,
        )
        assert result.success
        assert _locked(warehouse) and build.poll() is None, "dbt must still hold the lock"
    finally:
        build.terminate()
        build.wait(timeout=60)
