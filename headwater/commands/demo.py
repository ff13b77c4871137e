"""`headwater demo`: generate a synthetic e-commerce world, build it, replay the journeys over
its last two weeks (the checkouts its customers make in answer land and are built too: see
headwater/demo/response.py), summarise it, sync the reference audiences (dbt_project/syncs.yml)
to local stand-ins of their destinations, and write the report.

The summary is a list of sections, one function each (`SECTIONS`): a later part adds its own
(profiles, identity, audiences) by appending a function that takes the open warehouse
connection and the WorldStats and returns a rich renderable, or None to skip itself.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import click
import duckdb
from rich.console import RenderableType
from rich.table import Table

from activations.config import SyncConfigError, load_syncs
from activations.engine import SyncResult, run_sync
from headwater.activity import activity_dir
from headwater.commands.console import wide_console
from headwater.commands.sync import _warehouse, syncs_file
from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.demo import WorldStats, generate_world
from headwater.measurement.report import write_report
from headwater.snapshots import publish
from headwater.warehouse import connect
from journeys.runtime import open_cap_ledger

# The activity feed's staging and the measurement marts (dbt_project/models/.../measurement).
MEASUREMENT_SELECTION = ("path:models/staging/activity", "path:models/marts/measurement")

Section = Callable[[duckdb.DuckDBPyConnection, WorldStats], RenderableType | None]


def _table(title: str, rows: Sequence[tuple[str, object]], key: str = "what") -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key)
    table.add_column("rows", justify="right")
    for name, value in rows:
        table.add_row(name, f"{value:,}" if isinstance(value, int) else str(value))
    return table


def raw_section(con: duckdb.DuckDBPyConnection, stats: WorldStats) -> RenderableType:
    return _table("Raw rows landed", list(stats.raw_rows.items()), key="raw table")


def dirt_section(con: duckdb.DuckDBPyConnection, stats: WorldStats) -> RenderableType:
    rows = list(stats.dirt.items()) + [
        (f"phone format: {fmt}", n) for fmt, n in stats.phone_formats.items()]
    return _table("Dirt injected on purpose", rows, key="kind")


def world_section(con: duckdb.DuckDBPyConnection, stats: WorldStats) -> RenderableType:
    return _table(f"World (seed {stats.seed}, as of {stats.as_of:%Y-%m-%d %H:%M} UTC)",
                  [("customers", stats.customers), *stats.facts.items()], key="fact")


def staging_section(con: duckdb.DuckDBPyConnection, stats: WorldStats) -> RenderableType | None:
    if not _has_table(con, "quarantined_records"):
        return None
    rows = [(f"{t}: {model}", n) for t, model, n in con.execute("""
        select t, model, n from (
            select 'kept' as t, 'stg_events' as model, count(*) as n from stg_events
            union all select 'kept', 'stg_orders', count(*) from stg_orders
            union all select 'kept', 'stg_crm_contacts', count(*) from stg_crm_contacts
            union all select 'kept', 'stg_consent', count(*) from stg_consent
            union all select 'collapsed', source_table || ' / ' || reason, sum(collapsed_rows)
                from stg_collapsed_records group by all
            union all select 'quarantined', source_table || ' / ' || reason, count(*)
                from quarantined_records group by all
        ) order by t desc, model
    """).fetchall()]
    return _table("Staging: kept, collapsed, quarantined", rows, key="outcome")


SECTIONS: list[Section] = [world_section, raw_section, dirt_section, staging_section]


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(
        "select count(*) from information_schema.tables where table_name = ?", [name]
    ).fetchone()
    return bool(row and row[0])


def _fresh_warehouse(settings: Settings) -> None:
    """A demo run starts from a clean warehouse file: the old one (and its WAL) is removed."""
    for path in (settings.duckdb_path, settings.duckdb_path.with_name(
            settings.duckdb_path.name + ".wal")):
        if path.exists():
            path.unlink()


@click.command()
@click.option("--customers", default=2000, show_default=True, help="How many real customers.")
@click.option("--seed", default=7, show_default=True, help="Random seed; same seed, same world.")
@click.option("--as-of", "as_of", default=None,
              help="'Now' of the world as an ISO timestamp (UTC); default: now, to the minute.")
@click.option("--skip-build", is_flag=True, help="Only generate the raw tables; do not run dbt.")
@click.option("--no-sync", is_flag=True,
              help="Do not sync the reference audiences to local destination stand-ins.")
def demo(customers: int, seed: int, as_of: str | None, skip_build: bool, no_sync: bool) -> None:
    """Generate the demo world into the warehouse, build every model and print a summary.

    This REPLACES the warehouse file at HEADWATER_DUCKDB_PATH.
    """
    settings = Settings.from_env()
    if settings.target != "duckdb":
        raise click.ClickException(
            f"headwater demo writes a local DuckDB warehouse; HEADWATER_TARGET is "
            f"{settings.target!r}. Unset it (or set it to duckdb) to run the demo.")
    try:
        when = (datetime.fromisoformat(as_of) if as_of
                else datetime.now(UTC).replace(tzinfo=None, second=0, microsecond=0))
    except ValueError as exc:
        raise click.BadParameter(f"{as_of!r} is not an ISO timestamp such as "
                                 "2025-06-01T12:00:00", param_hint="--as-of") from exc
    if when.tzinfo is not None:
        when = when.astimezone(UTC).replace(tzinfo=None)
    console = wide_console()
    _fresh_warehouse(settings)
    with console.status(f"Generating {customers:,} customers into {settings.duckdb_path}"):
        con = connect(settings.duckdb_path, wait_seconds=30)
        try:
            stats = generate_world(con, customers=customers, seed=seed, as_of=when)
        finally:
            con.close()
    if not skip_build:
        console.rule("dbt build")
        run_dbt("build", ["--vars", json.dumps({"as_of": when.isoformat()})], settings)
        _publish(settings)
    if not skip_build and not no_sync:
        console.rule("Journeys, replayed over the world's last two weeks")
        from headwater.demo.journeys import replay_journeys  # stand-ins: demo only

        replay = replay_journeys(settings, when, seed=seed)
        console.print(replay.table)
        if replay.recoveries:
            # The checkouts the messages earned are raw rows now. Everything downstream of
            # them is rebuilt as of the world's end before the summary and the syncs read it
            # (the measurement models are rebuilt with the report).
            console.rule("dbt build of what the checkouts changed")
            run_dbt("build", ["--select", "stg_events+", "stg_orders+", "quarantined_records+",
                              "stg_collapsed_records+", "--exclude", *MEASUREMENT_SELECTION,
                              "--vars", json.dumps({"as_of": when.isoformat()})], settings)
            _publish(settings)
    if not skip_build:
        console.rule("Summary")
    con = connect(settings.duckdb_path, wait_seconds=30)
    try:
        for section in SECTIONS:
            renderable = section(con, stats)
            if renderable is not None:
                console.print(renderable)
    finally:
        con.close()
    if not skip_build and not no_sync:
        console.rule("Syncs to local stand-ins")
        console.print(sync_to_standins(settings))
    if not skip_build:
        console.rule("Report")
        console.print(f"Report written to {measure_and_report(settings, when)}")


def _publish(settings: Settings) -> None:
    """As `headwater build` does: syncs, sensors and the journeys read published snapshots,
    never the warehouse file."""
    # Read-write on purpose: dbt-duckdb may still hold the file open in this process, and DuckDB
    # refuses a second connection with a different configuration.
    con = connect(settings.duckdb_path, wait_seconds=30)
    try:
        publish(settings, con=con)
    finally:
        con.close()


def measure_and_report(settings: Settings, when: datetime) -> Path:
    """Rebuild the measurement models (the syncs above just wrote to the activity feed),
    publish them and write `headwater report`'s page; returns its path.

    "Now" moves to the wall clock for these models only, so that sends made a moment ago (after
    the world's as_of) count; the models upstream keep the world's as_of.
    """
    now = max(when, datetime.now(UTC).replace(tzinfo=None, microsecond=0))
    run_dbt("build", ["--select", *MEASUREMENT_SELECTION,
                      "--vars", json.dumps({"as_of": now.isoformat()})], settings)
    con = connect(settings.duckdb_path, wait_seconds=30)
    try:
        publish(settings, con=con)
    finally:
        con.close()
    return write_report(settings)


def sync_to_standins(settings: Settings) -> Table:
    """Run every declared sync against local stand-ins; a table of what each did and holds.

    The stand-ins' final states stay in `<warehouse dir>/standins/<kind>.json`.
    """
    # Imported here: every `headwater` command imports this module, only the demo needs them.
    from headwater.demo.standins import DemoStandins, describe_holdings

    try:
        specs = load_syncs(syncs_file(settings))
    except SyncConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    table = Table(title="Syncs to local stand-ins (state files in "
                  f"{settings.duckdb_path.parent / 'standins'})", title_justify="left")
    for col in ("sync", "destination", "added", "changed", "removed", "rejected"):
        table.add_column(col, justify="left" if col in ("sync", "destination") else "right")
    table.add_column("the stand-in now holds")
    results: list[SyncResult] = []
    with DemoStandins.for_syncs(specs, settings.duckdb_path.parent / "standins") as standins:
        # The demo's own environment is left alone: URLs and test credentials go to run_sync.
        env = standins.environ(specs, base=os.environ)
        with _warehouse(settings) as (con, log), contextlib.closing(
            open_cap_ledger(settings)
        ) as caps:
            for spec in specs:
                try:
                    results.append(run_sync(con, spec, lock_dir=settings.duckdb_path.parent,
                                            environ=env, activity_dir=activity_dir(settings),
                                            caps=caps, change_log=log))
                except SyncConfigError as exc:
                    raise click.ClickException(f"sync {spec.name}: {exc}") from exc
        states = standins.states()
    for spec, result in zip(specs, results, strict=True):
        planned = result.planned
        table.add_row(
            spec.name, spec.destination.kind,
            f"{planned.get('add', 0) + planned.get('send', 0):,}",
            f"{planned.get('update', 0):,}", f"{planned.get('remove', 0):,}",
            f"{result.rejected + result.dead:,}" + ("" if result.ok else " (not ok)"),
            describe_holdings(spec, states[spec.destination.kind]),
        )
    return table
