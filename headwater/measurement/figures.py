"""The figures of the report and of Dagster's metadata, read from the measurement models.

Where they are read from: the published snapshots (headwater/snapshots.py), which every
`headwater build`, `headwater demo` and Dagster build writes after dbt succeeds. So the report
works while `dbt build` holds the warehouse, and never opens the file at the instant a build
starts (which would make the build fail: DESIGN.md, the writer lock). Only when nothing of the
measurement is published (dbt was run by hand) does it open the warehouse read-only, and if a
build holds it, it says so: run it again when the build is done.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import duckdb

from headwater import snapshots
from headwater.config import Settings
from headwater.warehouse import WarehouseBusyError, connect

# The models the report reads; all small aggregates, published after every build.
MODELS = (
    "measurement_flow_weekly",
    "measurement_revenue_weekly",
    "measurement_journey_lift",
    "measurement_journey_funnel",
    "measurement_journey_latency",
    "measurement_delivery_health",
    "measurement_freshness",
)

Row = dict[str, Any]


class FiguresUnavailable(RuntimeError):
    """The measurement models are neither published nor readable in the warehouse."""


@dataclass
class Figures:
    """Every number the report shows, as rows of the measurement models."""

    flows: list[Row] = field(default_factory=list)
    revenue: list[Row] = field(default_factory=list)
    lift: list[Row] = field(default_factory=list)
    funnel: list[Row] = field(default_factory=list)
    latency: list[Row] = field(default_factory=list)
    health: list[Row] = field(default_factory=list)
    freshness: list[Row] = field(default_factory=list)
    # Where they came from ("published snapshot 12", "warehouse file"), and when.
    read_from: str = ""
    built_at: datetime | None = None

    @property
    def weeks(self) -> list[date]:
        return sorted({r["week"] for r in self.flows})

    @property
    def flow_names(self) -> list[str]:
        return sorted({r["flow"] for r in self.flows})

    @property
    def journeys(self) -> list[str]:
        return sorted({r["journey"] for r in self.funnel} | {r["journey"] for r in self.lift})

    def totals(self) -> Row:
        """Headline numbers: sends, attributed and unattributed revenue, revenue per send."""
        sends = sum(int(r["sends"]) for r in self.flows)
        attributed = sum(float(r["attributed_revenue"]) for r in self.revenue)
        unattributed = sum(float(r["unattributed_revenue"]) for r in self.revenue)
        return {
            "sends": sends,
            "conversions": sum(int(r["conversions"]) for r in self.flows),
            "attributed_revenue": attributed,
            "unattributed_revenue": unattributed,
            "revenue": attributed + unattributed,
            "revenue_per_send": attributed / sends if sends else None,
        }

    def overall_latency(self) -> Row | None:
        return next((r for r in self.latency if r["scope"] == "all"), None)

    def dead_letters(self) -> int:
        return sum(int(r["dead_letters"] or 0) for r in self.health)

    def success_rate(self) -> float | None:
        """Delivered over delivered + failed attempts, across every flow."""
        ok = sum(int(r["delivered"] or 0) for r in self.health)
        failed = sum(int(r["rejected"] or 0) + int(r["retried"] or 0) + int(r["dead"] or 0)
                     for r in self.health)
        return ok / (ok + failed) if ok + failed else None


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[Row]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def read_figures(con: duckdb.DuckDBPyConnection) -> Figures:
    """The figures from a connection where the measurement models are relations."""
    return Figures(
        flows=_rows(con, "select * from measurement_flow_weekly order by flow, week"),
        revenue=_rows(con, "select * from measurement_revenue_weekly order by week"),
        lift=_rows(con, "select * from measurement_journey_lift order by journey"),
        funnel=_rows(con, "select * from measurement_journey_funnel"
                          " order by journey, step_position"),
        latency=_rows(con, "select * from measurement_journey_latency"
                           " order by scope, journey nulls first, step nulls first"),
        health=_rows(con, "select * from measurement_delivery_health order by source, flow"),
        freshness=_rows(con, "select * from measurement_freshness order by input"),
    )


@contextlib.contextmanager
def figures_connection(settings: Settings) -> Iterator[tuple[duckdb.DuckDBPyConnection, str,
                                                             datetime | None]]:
    """A connection where MODELS are readable: published snapshots, else the warehouse file.

    Yields (connection, where they came from, when they were built).
    """
    if settings.target != "duckdb":
        raise FiguresUnavailable(
            "headwater report reads the DuckDB warehouse; on Snowflake query the measurement_* "
            "models directly (or point a BI tool at them).")
    folder = snapshots.published_dir(settings)
    manifest = snapshots.read_manifest(folder)
    if manifest is not None and all(m in manifest.models for m in MODELS):
        con = duckdb.connect(":memory:")
        try:
            for model in MODELS:
                con.execute(f"create view {model} as select * from "
                            f"{snapshots.relation(model, settings, manifest, folder)}")
            built = datetime.fromtimestamp(manifest.published_at)
            yield con, f"published snapshot {manifest.seq} ({folder})", built
        finally:
            con.close()
        return
    if not settings.duckdb_path.exists():
        raise FiguresUnavailable(
            f"No warehouse at {settings.duckdb_path} and nothing published in {folder}: run "
            "`headwater demo` or `headwater build` first.")
    try:
        con = connect(settings.duckdb_path, read_only=True)
    except WarehouseBusyError as exc:
        raise FiguresUnavailable(
            "A dbt build (or another process) holds the warehouse and the measurement models "
            "are not published yet; run `headwater report` again when the build has finished "
            f"(`headwater build` publishes them). {exc}") from exc
    try:
        missing = [m for m in MODELS if not con.execute(
            "select count(*) from information_schema.tables where table_name = ?", [m]
        ).fetchone()[0]]  # type: ignore[index]
        if missing:
            raise FiguresUnavailable(
                f"The warehouse has no {', '.join(missing)}: run `headwater build` (the "
                "measurement models are in dbt_project/models/marts/measurement/).")
        yield con, f"warehouse file {settings.duckdb_path}", datetime.fromtimestamp(
            settings.duckdb_path.stat().st_mtime)
    finally:
        con.close()


def load_figures(settings: Settings) -> Figures:
    """read_figures over figures_connection: what `headwater report` and Dagster use."""
    started = time.monotonic()
    with figures_connection(settings) as (con, source, built):
        figures = read_figures(con)
    figures.read_from = f"{source}, read in {time.monotonic() - started:.2f} s"
    figures.built_at = built
    return figures
