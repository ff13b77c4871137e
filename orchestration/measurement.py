"""Measurement in Dagster: the report as an asset downstream of the measurement dbt models, its
figures as asset metadata, and asset checks on delivery success, dead letters, fast-path
latency and the age of the measurement.

Everything is read from the published snapshots (headwater/measurement/figures.py), the same
numbers `headwater report` shows; nothing here opens the warehouse, which a build may hold.
Thresholds (environment):
    HEADWATER_MIN_DELIVERY_SUCCESS   0.95   delivered / (delivered + failed) attempts, all flows
    HEADWATER_MAX_DEAD_LETTERS       0      records dead-lettered now
    HEADWATER_MAX_LATENCY_P95_MS     300    fast-path p95 (the design's budget), all journeys
    HEADWATER_MAX_MEASUREMENT_AGE_MINUTES 180   since the last published build (3 hourly builds)
"""


import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset_check,
)
from dagster_dbt import get_asset_key_for_model

from headwater.measurement.figures import MODELS, Figures, load_figures
from headwater.measurement.report import default_report_path, write_report
from orchestration.resources import HeadwaterResource

REPORT_KEY = AssetKey(["headwater", "measurement_report"])
GROUP = "measurement"
CHECKS = ("delivery_success_rate", "dead_letters", "fastpath_latency_p95", "measurement_fresh")


def _limit(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> MetadataValue:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join("-" if v is None else str(v) for v in r) + " |" for r in rows]
    return MetadataValue.md("\n".join(lines))


def _round(value: Any, digits: int = 4) -> float | None:
    return None if value is None else round(float(value), digits)


def report_metadata(figures: Figures) -> dict[str, Any]:
    """The report's headline figures, per flow and per journey, as Dagster metadata."""
    totals = figures.totals()
    latency = figures.overall_latency() or {}
    latest = {}
    for r in figures.flows:  # rows are ordered by flow, week: the last one per flow wins
        latest[r["flow"]] = r
    return {
        "sends": int(totals["sends"]),
        "conversions": int(totals["conversions"]),
        "attributed_revenue": float(round(totals["attributed_revenue"], 2)),
        "unattributed_revenue": float(round(totals["unattributed_revenue"], 2)),
        "revenue_per_send": _round(totals["revenue_per_send"]) or 0.0,
        "delivery_success_rate": _round(figures.success_rate()) or 0.0,
        "dead_letters": figures.dead_letters(),
        "fastpath_latency_p50_ms": _round(latency.get("p50_ms"), 1) or 0.0,
        "fastpath_latency_p95_ms": _round(latency.get("p95_ms"), 1) or 0.0,
        "fastpath_latency_p99_ms": _round(latency.get("p99_ms"), 1) or 0.0,
        "revenue_per_send_by_flow": _md_table(
            ["flow", "channel", "latest week", "sends", "revenue", "revenue per send"],
            [(r["flow"], r["channel"], r["week"], int(r["sends"]), _round(r["revenue"], 2),
              _round(r["revenue_per_send"], 2)) for r in latest.values()]),
        "journey_lift": _md_table(
            ["journey", "treated", "holdout", "conversion lift", "95% interval",
             "revenue/person lift", "95% interval"],
            [(r["journey"], int(r["treated_subjects"]), int(r["holdout_subjects"]),
              _round(r["conversion_rate_lift"]),
              f"[{_round(r['conversion_rate_lift_low'])}, "
              f"{_round(r['conversion_rate_lift_high'])}]",
              _round(r["revenue_per_subject_lift"], 2),
              f"[{_round(r['revenue_per_subject_lift_low'], 2)}, "
              f"{_round(r['revenue_per_subject_lift_high'], 2)}]") for r in figures.lift]),
        "read_from": figures.read_from,
    }


def build_measurement_report(dbt_assets: Sequence[AssetsDefinition]) -> AssetsDefinition:
    @asset(
        key=REPORT_KEY,
        deps=[get_asset_key_for_model(dbt_assets, m) for m in MODELS],
        group_name=GROUP,
        kinds={"html"},
        description="`headwater report`: revenue per send per flow and week, journey funnels, "
        "holdout lift, monitoring - written after the measurement models are published.",
        automation_condition=AutomationCondition.eager(),
    )
    def measurement_report(
        context: AssetExecutionContext, headwater: HeadwaterResource
    ) -> MaterializeResult:
        settings = headwater.locations().settings
        path = write_report(settings, default_report_path(settings))
        figures = load_figures(settings)
        metadata = {"path": MetadataValue.path(str(path)), **report_metadata(figures)}
        context.log.info(f"report written to {path}")
        return MaterializeResult(metadata=metadata)

    return measurement_report


@multi_asset_check(
    specs=[AssetCheckSpec(name, asset=REPORT_KEY) for name in CHECKS],
    can_subset=True,
)
def measurement_checks(
    context: AssetCheckExecutionContext, headwater: HeadwaterResource
) -> Iterator[AssetCheckResult]:
    """Delivery success, dead letters, fast-path p95 and the measurement's age (WARN)."""
    figures = load_figures(headwater.locations().settings)
    selected = {k.name for k in context.selected_asset_check_keys}
    for name, passed, metadata, description in evaluate_checks(figures):
        if name in selected:
            yield AssetCheckResult(
                asset_key=REPORT_KEY, check_name=name, passed=passed,
                severity=AssetCheckSeverity.WARN, metadata=metadata, description=description)


def evaluate_checks(
    figures: Figures, now: float | None = None
) -> list[tuple[str, bool, dict[str, Any], str]]:
    """(check, passed, metadata, description) per check, from the figures alone."""
    now = time.time() if now is None else now
    rate = figures.success_rate()
    min_rate = _limit("HEADWATER_MIN_DELIVERY_SUCCESS", 0.95)
    dead = figures.dead_letters()
    max_dead = _limit("HEADWATER_MAX_DEAD_LETTERS", 0)
    latency = figures.overall_latency()
    p95 = None if latency is None else float(latency["p95_ms"])
    max_p95 = _limit("HEADWATER_MAX_LATENCY_P95_MS", 300)
    age = None if figures.built_at is None else (now - figures.built_at.timestamp()) / 60
    max_age = _limit("HEADWATER_MAX_MEASUREMENT_AGE_MINUTES", 180)
    worst = sorted((r["success_rate"], r["flow"]) for r in figures.health
                    if r["success_rate"] is not None)[:3]
    lags = {r["input"]: _round(r["lag_hours"], 1) for r in figures.freshness}
    return [
        ("delivery_success_rate", rate is None or rate >= min_rate,
         {"success_rate": _round(rate) or 0.0, "min_success_rate": min_rate,
          "worst_flows": MetadataValue.json([[f, _round(r)] for r, f in worst])},
         "no delivery attempts yet" if rate is None
         else f"{rate:.1%} of attempts delivered (minimum {min_rate:.0%})"),
        ("dead_letters", dead <= max_dead,
         {"dead_letters": dead, "max_dead_letters": max_dead,
          "by_flow": MetadataValue.json({r["flow"]: int(r["dead_letters"])
                                         for r in figures.health if r["dead_letters"]})},
         f"{dead} record(s) dead-lettered: `headwater sync NAME --dead-letters` lists them"),
        ("fastpath_latency_p95", p95 is None or p95 <= max_p95,
         {"p50_ms": _round(latency["p50_ms"], 1) if latency else 0.0,
          "p95_ms": _round(p95, 1) or 0.0,
          "p99_ms": _round(latency["p99_ms"], 1) if latency else 0.0,
          "max_p95_ms": max_p95},
         "no journey step sent yet" if p95 is None
         else f"p95 {p95:.1f} ms (budget {max_p95:.0f} ms)"),
        ("measurement_fresh", age is not None and age <= max_age,
         {"age_minutes": _round(age, 1) if age is not None else -1.0,
          "max_age_minutes": max_age, "input_lag_hours_at_build": MetadataValue.json(lags)},
         "never built" if age is None
         else f"measurement built {age:.0f} minutes ago (maximum {max_age:.0f})"),
    ]
