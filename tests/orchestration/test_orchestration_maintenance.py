"""The landing compaction job: the collector's small files merged on a schedule, rows kept."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from orch_world import World

from collector import landing
from collector.config import CollectorConfig
from collector.server import Collector
from orchestration.maintenance import landing_compaction_job
from orchestration.resources import HeadwaterResource

KEY = "maintenance-key"


def _post(url: str, n: int) -> None:
    now = datetime.now(UTC).isoformat()
    batch = [{"type": "track", "event": "Product Viewed", "userId": "u1",
              "messageId": str(uuid.uuid4()), "timestamp": now} for _ in range(n)]
    auth = base64.b64encode(f"{KEY}:".encode()).decode()
    answer = requests.post(f"{url}/v1/batch", json={"batch": batch, "sentAt": now},
                           headers={"Authorization": f"Basic {auth}"}, timeout=10)
    assert answer.status_code == 200, answer.text


def _rows(landing_dir: Path) -> list[tuple[object, ...]]:
    import duckdb

    with duckdb.connect() as con:
        return con.execute(f"select message_id, received_at from {landing.read_sql(landing_dir)} "
                           "order by all").fetchall()


def test_compaction_job_merges_landed_files_and_keeps_every_row(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADWATER_LANDING_DIR", raising=False)
    warehouse = tmp_path / "headwater.duckdb"
    landing_dir = tmp_path / "landing"  # next to the warehouse: the default
    config = CollectorConfig.from_env({"HEADWATER_WRITE_KEY": KEY}, port=0,
                                      landing_dir=landing_dir, handoff=False)
    with Collector(config) as running:
        for _ in range(5):
            _post(running.url, 4)
    before = _rows(landing_dir)
    assert len(before) == 20 and len(landing.landed_files(landing_dir / "events")) == 5

    resources = {"headwater": HeadwaterResource(duckdb_path=str(warehouse))}
    # Scheduled runs leave files younger than five minutes alone: these are seconds old.
    young = landing_compaction_job.execute_in_process(resources=resources)
    assert young.success and young.output_for_node("compact_landing") == 0
    result = landing_compaction_job.execute_in_process(
        resources=resources,
        run_config={"ops": {"compact_landing": {"config": {"min_age_seconds": 0}}}})
    assert result.success and result.output_for_node("compact_landing") == 5
    [merged] = landing.landed_files(landing_dir / "events")
    assert merged.compacted
    assert _rows(landing_dir) == before


def test_compaction_is_scheduled_in_the_code_location(world: World) -> None:
    schedule = world.defs.get_schedule_def("landing_compaction_schedule")
    assert schedule.job_name == "landing_compaction"
    assert schedule.cron_schedule == "*/5 * * * *"


def test_compact_command_runs_the_same_pass(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from headwater.cli import cli

    landing_dir = tmp_path / "landing"
    config = CollectorConfig.from_env({"HEADWATER_WRITE_KEY": KEY}, port=0,
                                      landing_dir=landing_dir, handoff=False)
    with Collector(config) as running:
        for _ in range(3):
            _post(running.url, 2)
    before = _rows(landing_dir)
    out = CliRunner().invoke(cli, ["compact", "--landing-dir", str(landing_dir),
                                   "--min-age", "0"])
    assert out.exit_code == 0, out.output
    assert "Merged 3 files into 1 (6 rows" in out.output
    assert _rows(landing_dir) == before
    missing = CliRunner().invoke(cli, ["compact", "--landing-dir", str(tmp_path / "none")])
    assert missing.exit_code != 0 and "No landing folder" in missing.output
