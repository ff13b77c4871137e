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


CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts"


@pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed: "
                    "scripts/browser.sh installs it (.ci/run calls it)")
def test_report_in_a_real_browser(world: ReportWorld, tmp_path: Path) -> None:
    """Headless Chromium lays the page out: the charts are drawn (visible, with a size) with
    the models' values, and a screenshot is kept in test-artifacts/."""
    from playwright.sync_api import sync_playwright

    out = write_report(world.settings, tmp_path / "report.html")
    con = world.con
    expected_rps = sorted(r[0] for r in con.execute(
        "select revenue_per_send from measurement_flow_weekly").fetchall())
    lift = con.execute("select revenue_per_subject_lift, revenue_per_subject_lift_low, "
                       "revenue_per_subject_lift_high from measurement_journey_lift").fetchone()
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(out.as_uri(), wait_until="load")
            points = page.locator("circle.point")
            assert points.count() == len(expected_rps)
            drawn = sorted(float(v) for v in points.evaluate_all(
                "els => els.map(e => e.getAttribute('data-value'))"))
            assert drawn == pytest.approx(expected_rps)
            # Drawn, not only present: every point and bar has a box on the page, and a
            # higher revenue per send sits higher (smaller y) in the chart.
            boxes = points.evaluate_all("els => els.map(e => [Number(e.dataset.value), "
                                        "e.getBoundingClientRect().y, "
                                        "e.getBoundingClientRect().width])")
            assert all(w > 0 for _, _, w in boxes)
            by_value = sorted(boxes)
            assert all(a[1] >= b[1] for a, b in zip(by_value, by_value[1:], strict=False))
            stages = page.locator("rect.stage[data-journey='cart_abandonment']")
            widths = stages.evaluate_all("els => els.map(e => [Number(e.dataset.value), "
                                         "e.getBoundingClientRect().width])")
            assert widths[0][0] == 24 and widths[0][1] > 0
            for value, width in widths[1:]:  # widths proportional to the counts
                assert width == pytest.approx(widths[0][1] * value / widths[0][0], rel=0.02)
            interval = page.locator(
                "g.lift[data-metric='revenue_per_subject_lift'][data-journey='cart_abandonment']")
            got = [float(interval.get_attribute(f"data-{k}") or "nan")
                   for k in ("value", "low", "high")]
            assert got == pytest.approx(list(lift))
            assert interval.locator("line.whisker").bounding_box()["width"] > 0  # type: ignore[index]
            assert page.locator("#kpi-sends b").inner_text() != "-"
            page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
            # Self-contained: the only thing loaded is the file itself.
            assert requests == [out.as_uri()]
        finally:
            browser.close()
