"""The writer lock: sensors and sync runs keep working while a real `dbt build` holds the file.

A copy of the built world is rebuilt by `dbt build` in a subprocess; while DuckDB's lock on the
copy is held (checked: a read-only open fails), a sensor is evaluated and a sync asset is
materialized against the same copy. Both read published snapshots and the state file only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from dagster import build_sensor_context, materialize
from orch_world import World

from headwater.config import Settings
from headwater.dbt import base_args
from orchestration.resources import HeadwaterResource
from orchestration.syncs import sync_asset_key

SYNC = "cart_email_hook"


def _locked(path: Path) -> bool:
    try:
        duckdb.connect(str(path), read_only=True).close()
        return False
    except duckdb.IOException as exc:
        assert "lock" in str(exc).lower(), exc
        return True


def test_sensor_and_sync_run_while_dbt_build_holds_the_warehouse(
    built: World, tmp_path: Path
) -> None:
    source = built.warehouse.parent
    copy = tmp_path / "warehouse"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("*.lock", "*.wal"))
    warehouse = copy / "headwater.duckdb"
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
        result = materialize(
            [built.defs.get_assets_def(sync_asset_key(SYNC))],
            resources=resources,
            instance=built.instance,
        )
        assert result.success
        assert _locked(warehouse), "the build must still hold the lock: the test proved nothing"
    finally:
        build.terminate()
        build.wait(timeout=60)
