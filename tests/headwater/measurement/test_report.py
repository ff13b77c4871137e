"""`headwater report`: the HTML carries the models' numbers in its charts, renders clearly
with empty feeds, and reads published snapshots (a build holding the warehouse is no problem)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from report_world import ReportWorld, build_report_world

from headwater.cli import cli
from headwater.config import Settings
from headwater.measurement.figures import Figures, FiguresUnavailable, load_figures
from headwater.measurement.report import render, write_report

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReportWorld]:
    w = build_report_world(tmp_path_factory.mktemp("report"))
    yield w
    w.con.close()


def _values(html: str, cls: str, **attrs: str) -> dict[tuple[str, ...], float]:
    """data-value of every element of class `cls`, keyed by the attributes named in `attrs`."""
    out = {}
    for tag in re.findall(rf'<[a-z]+ class="{cls}"[^>]*>', html):
        found = dict(re.findall(r'data-([a-z]+)="([^"]*)"', tag))
        out[tuple(found[a] for a in attrs.values())] = float(found["value"])
    return out


def test_charts_carry_the_models_numbers(world: ReportWorld, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEADWATER_DUCKDB_PATH", str(world.settings.duckdb_path))
    out = tmp_path / "r.html"
    result = CliRunner().invoke(cli, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    html = out.read_text()
    con = world.con
    points = _values(html, "point", a="series", b="x")
    expected = {(f, str(w)): rps for f, w, rps in con.execute(
        "select flow, week, revenue_per_send from measurement_flow_weekly").fetchall()}
    assert points == pytest.approx(expected)
    assert len(expected) == 6  # 3 flows x 2 weeks
    bars = _values(html, "stage", a="journey", b="stage")
    funnel = con.execute(
        "select step, sent, instances_entered from measurement_journey_funnel").fetchall()
    assert bars[("cart_abandonment", "entered")] == funnel[0][2] == 24
    for step, sent, _ in funnel:
        assert bars[("cart_abandonment", f"{step}: sent")] == sent
    lift = con.execute(
        "select conversion_rate_lift, conversion_rate_lift_low, conversion_rate_lift_high "
        "from measurement_journey_lift").fetchone()
    tag = re.search(r'<g class="lift" data-journey="cart_abandonment" '
                    r'data-metric="conversion_rate_lift"[^>]*>', html)
    assert tag is not None
    drawn = dict(re.findall(r'data-([a-z]+)="([^"]*)"', tag.group(0)))
    assert [float(drawn[k]) for k in ("value", "low", "high")] == pytest.approx(list(lift))
    stacked = _values(html, "bar", a="x", b="kind")
    for week, attributed, unattributed in con.execute(
            "select week, attributed_revenue, unattributed_revenue "
            "from measurement_revenue_weekly").fetchall():
        assert stacked[(str(week), "attributed")] == pytest.approx(attributed)
        assert stacked[(str(week), "unattributed")] == pytest.approx(unattributed)
    # Monitoring: the dead letter, the overall p95, every input's freshness.
    assert re.search(r'data-flow="winback_email">.*?data-value="1"', html, re.S)
    p95 = con.execute(
        "select p95_ms from measurement_journey_latency where scope = 'all'").fetchone()[0]
    assert f'data-value="{p95}"' in html
    for name in ("raw.events", "raw.orders", "activity.deliveries", "activity.journey_events"):
        assert f'data-input="{name}"' in html
    assert "http://" not in html and "https://" not in html  # nothing to fetch when opened


def test_reads_the_published_snapshot_while_the_warehouse_is_held(world: ReportWorld) -> None:
    # This process holds the warehouse (dbt-duckdb's connection, like a running build does in
    # another process); the report never needs to open it.
    figures = load_figures(world.settings)
    assert figures.read_from.startswith("published snapshot")
    assert figures.totals()["sends"] > 0


def test_says_retry_when_a_build_holds_an_unpublished_warehouse(tmp_path: Path) -> None:
    db = tmp_path / "busy.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('held', flush=True); time.sleep(60)", str(db)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)})
        with pytest.raises(FiguresUnavailable, match="run `headwater report` again"):
            write_report(settings, tmp_path / "r.html")
    finally:
        holder.kill()
        holder.wait()


def test_empty_feeds_render_clearly() -> None:
    html = render(Figures())
    assert "No sends yet" in html
    assert 'id="no-journeys"' in html and 'id="no-deliveries"' in html
    assert all(f'class="{c}"' not in html for c in ("point", "stage", "bar", "lift"))
