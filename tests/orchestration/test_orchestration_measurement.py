"""Measurement in the code location: the report asset carries the report's figures as metadata,
and the asset checks (delivery success, dead letters, fast-path p95, age) evaluate them, on a
built and published warehouse with sync and journey activity."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, materialize

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dbt_project" / "measurement"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "headwater" / "measurement"))

from report_world import ReportWorld, build_report_world  # noqa: E402

from headwater.measurement.figures import load_figures  # noqa: E402
from orchestration.measurement import REPORT_KEY, measurement_checks  # noqa: E402
from orchestration.resources import HeadwaterResource, Locations  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportWorld]:
    w = build_report_world(tmp_path_factory.mktemp("measurement_orch"))
    yield w
    w.con.close()


def test_report_asset_metadata_and_checks(world: ReportWorld,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_DUCKDB_PATH", str(world.settings.duckdb_path))
    monkeypatch.setenv("HEADWATER_DAGSTER_WORK_DIR", str(world.root / "dagster"))
    # Imported after the environment is set: the module builds `defs` from it on import.
    from orchestration.definitions import build_definitions

    defs = build_definitions(Locations.from_env())
    report_asset = defs.get_assets_def(REPORT_KEY)
    figures = load_figures(world.settings)
    with DagsterInstance.ephemeral() as instance:
        result = materialize(
            [report_asset, measurement_checks], instance=instance,
            resources={"headwater": HeadwaterResource(
                duckdb_path=str(world.settings.duckdb_path))},
        )
        assert result.success
        event = instance.get_latest_materialization_event(REPORT_KEY)
        assert event is not None and event.asset_materialization is not None
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
    totals = figures.totals()
    assert meta["sends"] == totals["sends"] == 53
    assert meta["attributed_revenue"] == pytest.approx(totals["attributed_revenue"])
    assert meta["dead_letters"] == 1
    assert meta["fastpath_latency_p95_ms"] == pytest.approx(
        figures.overall_latency()["p95_ms"], abs=0.05)  # type: ignore[index]
    assert "cart_abandonment" in meta["journey_lift"]
    assert Path(str(meta["path"])).exists()
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"delivery_success_rate", "dead_letters", "fastpath_latency_p95",
                           "measurement_fresh"}
    # 53 of 55 attempts delivered (96.4%, minimum 95%), but one record is dead-lettered.
    assert checks["delivery_success_rate"].passed
    assert checks["delivery_success_rate"].metadata["success_rate"].value == pytest.approx(
        53 / 55, abs=1e-4)
    assert not checks["dead_letters"].passed
    assert checks["dead_letters"].metadata["by_flow"].value == {"winback_email": 1}
    assert checks["fastpath_latency_p95"].passed  # 145.9 ms, budget 300 ms
    assert checks["measurement_fresh"].passed  # published a moment ago


def test_thresholds_come_from_the_environment(world: ReportWorld,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.measurement import evaluate_checks

    figures = load_figures(world.settings)
    monkeypatch.setenv("HEADWATER_MIN_DELIVERY_SUCCESS", "0.97")
    monkeypatch.setenv("HEADWATER_MAX_DEAD_LETTERS", "1")
    monkeypatch.setenv("HEADWATER_MAX_LATENCY_P95_MS", "100")
    monkeypatch.setenv("HEADWATER_MAX_MEASUREMENT_AGE_MINUTES", "1")
    assert figures.built_at is not None
    later = figures.built_at.timestamp() + 600
    passed = {name: ok for name, ok, _, _ in evaluate_checks(figures, now=later)}
    assert passed == {"delivery_success_rate": False, "dead_letters": True,
                      "fastpath_latency_p95": False, "measurement_fresh": False}
