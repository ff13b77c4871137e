"""`headwater report`: one static HTML page a marketer opens - revenue per send per flow and
week, each journey's funnel, lift against the holdout with its interval, unattributed revenue,
and the health of delivery and of the fast path.

Self-contained on purpose: inline CSS and SVG drawn here (charts.py), no script and no URL, so
the file can be mailed, attached to a ticket or opened offline, and shows the same thing
everywhere. The numbers are the measurement models' (figures.py); nothing is computed here
that an analytics engineer cannot find in dbt.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from headwater.config import Settings
from headwater.measurement import charts
from headwater.measurement.figures import Figures, load_figures

TEMPLATES = Path(__file__).parent / "templates"
REPORT_NAME = "headwater-report.html"


def default_report_path(settings: Settings) -> Path:
    """`<warehouse dir>/reports/headwater-report.html`."""
    return settings.duckdb_path.parent / "reports" / REPORT_NAME


def _money(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.2f}"


def _pct(value: Any, digits: int = 1) -> str:
    return "-" if value is None else f"{100 * float(value):.{digits}f}%"


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):,.1f} ms"


def _num(value: Any) -> str:
    return "-" if value is None else f"{int(value):,}"


def _stages(figures: Figures, journey: str) -> list[tuple[str, float]]:
    steps = [r for r in figures.funnel if r["journey"] == journey]
    if not steps:
        return []
    stages = [("entered", float(steps[0]["instances_entered"]))]
    stages += [(f"{r['step']}: sent", float(r["sent"])) for r in steps]
    stages.append(("converted (attributed)", float(sum(int(r["conversions"]) for r in steps))))
    return stages


def charts_for(figures: Figures) -> dict[str, Any]:
    weeks = [w.isoformat() for w in figures.weeks]
    series: dict[str, list[tuple[str, float]]] = {}
    for r in figures.flows:
        series.setdefault(r["flow"], []).append((r["week"].isoformat(),
                                                 float(r["revenue_per_send"])))
    revenue_weeks = [r["week"].isoformat() for r in figures.revenue]
    return {
        "revenue_per_send": charts.line_chart(series, weeks, "revenue per send by week",
                                              "revenue-per-send"),
        "funnels": {j: charts.bar_funnel(j, _stages(figures, j)) for j in figures.journeys},
        "conversion_lift": charts.intervals(
            [(r["journey"], r["conversion_rate_lift"], r["conversion_rate_lift_low"],
              r["conversion_rate_lift_high"]) for r in figures.lift],
            "conversion_rate_lift", "+.1%"),
        "revenue_lift": charts.intervals(
            [(r["journey"], r["revenue_per_subject_lift"], r["revenue_per_subject_lift_low"],
              r["revenue_per_subject_lift_high"]) for r in figures.lift],
            "revenue_per_subject_lift", "+,.2f"),
        "attribution": charts.stacked_bars(
            revenue_weeks,
            {"attributed": [float(r["attributed_revenue"]) for r in figures.revenue],
             "unattributed": [float(r["unattributed_revenue"]) for r in figures.revenue]},
            "attributed and unattributed revenue by week"),
    }


def render(figures: Figures, now: datetime | None = None) -> str:
    """The report's HTML for these figures."""
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(money=_money, pct=_pct, ms=_ms, num=_num)
    now = now or datetime.now(UTC).replace(tzinfo=None)
    freshness = [
        {**r, "lag_now_hours": None if r["latest_at"] is None
         else (now - r["latest_at"]).total_seconds() / 3600}
        for r in figures.freshness
    ]
    return env.get_template("report.html.j2").render(
        f=figures, totals=figures.totals(), charts=charts_for(figures), freshness=freshness,
        latency=figures.overall_latency(), success_rate=figures.success_rate(),
        dead_letters=figures.dead_letters(), generated_at=now,
        as_of=figures.freshness[0]["measured_at"] if figures.freshness else None,
    )


def write_report(settings: Settings, out: Path | None = None) -> Path:
    """Render the report from the built models and write it atomically; returns its path."""
    figures = load_figures(settings)
    path = (out or default_report_path(settings)).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(render(figures), encoding="utf-8")
    os.replace(tmp, path)  # a reader (a browser refreshing) never sees half a page
    return path
