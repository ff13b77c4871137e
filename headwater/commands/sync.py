"""`headwater sync`: run reverse-ETL syncs declared in dbt_project/syncs.yml.

    headwater sync NAME [--dry-run] [--full-resync]
    headwater sync --select tag:audience          # every sync whose audience the selector picks
    headwater sync --list
    headwater sync NAME --dead-letters            # list records that failed max_attempts times
    headwater sync NAME --replay-dead-letters     # send them again (same idempotency keys)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import duckdb
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from activations.config import SyncConfigError, SyncSpec, find_sync, load_syncs
from activations.diff import ChangeLog
from activations.engine import SyncResult, run_sync
from activations.lock import SyncAlreadyRunningError
from activations.state import list_dead_letters
from activations.state import replay_dead_letters as replay_dead
from headwater.activity import activity_dir
from headwater.commands.console import wide_console
from headwater.config import Settings
from headwater.snapshots import SnapshotError, published_dir, reader_connection
from headwater.warehouse import WarehouseBusyError
from journeys.config import JourneyConfigError
from journeys.runtime import open_cap_ledger


def syncs_file(settings: Settings) -> Path:
    return Path(os.environ.get("HEADWATER_SYNCS_FILE", settings.dbt_project_dir / "syncs.yml"))


def select_syncs(syncs: list[SyncSpec], selector: str, settings: Settings) -> list[SyncSpec]:
    """Syncs whose audience model is in `dbt ls --select <selector>`."""
    from dbt.cli.main import dbtRunner

    from headwater.dbt import base_args, dbt_env

    os.environ.update(dbt_env(settings))
    res = dbtRunner().invoke(
        ["ls", *base_args(settings), "--select", selector, "--resource-type", "model",
         "--output", "name", "--quiet"]
    )
    if not res.success:
        raise click.ClickException(f"dbt could not resolve --select {selector!r}: {res.exception}")
    # `dbt ls` returns the names it listed.
    listed = res.result if isinstance(res.result, list) else []
    models = {str(n).strip() for n in listed}
    return [s for s in syncs if s.audience.split(".")[-1] in models]


@contextmanager
def _warehouse(settings: Settings) -> Iterator[tuple[duckdb.DuckDBPyConnection, ChangeLog]]:
    """The connection syncs run on: published snapshots as views, the state file attached, and
    the change log of those snapshots (for incremental diffs).

    Never the warehouse file itself, which `dbt build` holds for its whole run (DESIGN.md): the
    CLI, Dagster's sync assets and sensors all read the same snapshots and the same state, so a
    sync started from either place sees what the other delivered.
    """
    folder = published_dir(settings)
    try:
        with reader_connection(settings, folder=folder, state_wait_seconds=10) as (
            con, manifest,
        ):
            yield con, ChangeLog(manifest, folder)
    except (SnapshotError, WarehouseBusyError) as exc:
        raise click.ClickException(str(exc)) from exc


def _summary(console: Console, result: SyncResult) -> None:
    table = Table(title=f"sync {result.sync_name}" + (" (dry run)" if result.dry_run else ""))
    for col in ("planned", "resumed", "delivered", "rejected", "dead", "pending", "requests",
                "seconds"):
        table.add_column(col, justify="right")
    planned = ", ".join(f"{k} {v}" for k, v in sorted(result.planned.items())) or "nothing"
    table.add_row(planned, str(result.resumed), str(result.delivered), str(result.rejected),
                  str(result.dead), str(result.pending), str(result.requests),
                  f"{result.seconds:.1f}")
    console.print(table)
    for sample in result.sample:
        console.print(sample)
    if result.stopped:
        console.print(f"[red]Stopped early:[/red] {result.stopped}\n"
                      "Records not delivered stay pending; run the sync again to resume.")
    if result.dead:
        console.print(f"[yellow]{result.dead} record(s) dead-lettered.[/yellow] List them with "
                      f"`headwater sync {result.sync_name} --dead-letters`.")


@click.command(name="sync")
@click.argument("name", required=False)
@click.option("--select", "selector", help="dbt selector: run every sync whose audience it picks.")
@click.option("--dry-run", is_flag=True, help="Count the diff and render a few records; send none.")
@click.option("--full-resync", is_flag=True, help="Send every member again, not just the diff.")
@click.option("--list", "list_syncs", is_flag=True, help="List declared syncs.")
@click.option("--dead-letters", is_flag=True, help="List dead-lettered records of NAME.")
@click.option("--replay-dead-letters", is_flag=True, help="Resend NAME's dead letters now.")
@click.option("--key", "keys", multiple=True, help="With --replay-dead-letters: only these keys.")
def sync(
    name: str | None, selector: str | None, dry_run: bool, full_resync: bool, list_syncs: bool,
    dead_letters: bool, replay_dead_letters: bool, keys: tuple[str, ...],
) -> None:
    """Deliver audiences to their destinations: only the diff since the last delivery."""
    settings = Settings.from_env()
    console = wide_console()
    path = syncs_file(settings)
    try:
        declared = load_syncs(path)
    except SyncConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if list_syncs:
        table = Table(title=str(path))
        for col in ("name", "audience", "destination", "mode"):
            table.add_column(col)
        for s in declared:
            table.add_row(s.name, s.audience, s.destination.kind, s.mode.value)
        console.print(table)
        return
    if bool(name) == bool(selector):
        raise click.UsageError("Give a sync NAME or --select <dbt selector> (not both).")
    try:
        targets = [find_sync(declared, name, str(path))] if name else select_syncs(
            declared, str(selector), settings)
    except SyncConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    if not targets:
        raise click.ClickException(f"No sync's audience matches --select {selector!r}.")
    if (dead_letters or replay_dead_letters) and not name:
        raise click.UsageError("--dead-letters and --replay-dead-letters need a sync NAME.")
    failed = False
    with _warehouse(settings) as (con, log):
        if dead_letters:
            _print_dead(console, con, targets[0].name)
            return
        if replay_dead_letters:
            n = replay_dead(con, targets[0].name, list(keys) or None)
            console.print(f"{n} dead letter(s) of {targets[0].name} queued; sending now.")
        for spec in targets:
            failed |= not _run_one(console, con, log, spec, settings, dry_run, full_resync)
    if failed:
        raise SystemExit(1)



def _print_dead(console: Console, con: duckdb.DuckDBPyConnection, name: str) -> None:
    rows = list_dead_letters(con, name)
    table = Table(title=f"dead letters of {name} ({len(rows)})")
    for col in ("idempotency_key", "profile_id", "action", "attempts", "code", "last error",
                "since"):
        table.add_column(col)
    for d in rows:
        table.add_row(d.idempotency_key, d.profile_id, d.action, str(d.attempts),
                      str(d.last_status_code or ""), (d.last_error or "")[:80],
                      str(d.updated_at)[:19])
    console.print(table)
    if rows:
        console.print(f"Fix the cause, then `headwater sync {name} --replay-dead-letters`.")


def _run_one(
    console: Console, con: duckdb.DuckDBPyConnection, log: ChangeLog, spec: SyncSpec,
    settings: Settings, dry_run: bool, full_resync: bool,
) -> bool:
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console, transient=True) as progress:
        task = progress.add_task(f"{spec.name}", total=None)

        def report(phase: str, done: int, total: int) -> None:
            progress.update(task, description=f"{spec.name} ({phase})", completed=done,
                            total=total)

        try:
            caps = open_cap_ledger(settings)
        except JourneyConfigError as exc:
            console.print(f"[red]{spec.name}:[/red] frequency caps: {exc}")
            return False
        try:
            result = run_sync(con, spec, lock_dir=settings.duckdb_path.parent,
                              full_resync=full_resync, dry_run=dry_run, progress=report,
                              activity_dir=activity_dir(settings), caps=caps, change_log=log)
        except (SyncConfigError, SyncAlreadyRunningError) as exc:
            console.print(f"[red]{spec.name}:[/red] {exc}")
            return False
        finally:
            caps.close()
    _summary(console, result)
    return result.ok or dry_run
