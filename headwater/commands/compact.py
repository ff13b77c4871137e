"""`headwater compact`: merge the collector's small landing files, for hosts without Dagster.

The Dagster schedule `landing_compaction_schedule` runs the same pass every five minutes
(orchestration/maintenance.py); run this from cron where Dagster does not run.
"""

from __future__ import annotations

from pathlib import Path

import click

from collector.config import default_landing_dir
from collector.landing import compact as compact_landing
from collector.landing import landed_files


@click.command()
@click.option(
    "--landing-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Landing folder (default $HEADWATER_LANDING_DIR or <warehouse dir>/landing).",
)
@click.option("--min-age", "min_age", type=float, default=300.0, show_default=True,
              help="Seconds: younger files are left alone (the fast path may be reading them).")
@click.option("--target-rows", type=int, default=1_000_000, show_default=True,
              help="Rows per merged file at most.")
def compact(landing_dir: Path | None, min_age: float, target_rows: int) -> None:
    """Merge landed event files older than --min-age into files of up to --target-rows."""
    folder = (landing_dir.expanduser().resolve() if landing_dir else default_landing_dir())
    if not (folder / "events").is_dir():
        raise click.ClickException(
            f"No landing folder at {folder}: nothing was collected there. Pass --landing-dir "
            "or set HEADWATER_LANDING_DIR to the folder `headwater collect` writes.")
    try:
        result = compact_landing(folder, min_age_seconds=min_age, target_rows=target_rows)
    except RuntimeError as exc:  # another pass holds the lock
        raise click.ClickException(str(exc)) from exc
    remaining = len(landed_files(folder / "events"))
    click.echo(f"Merged {result.merged_files} files into {result.written_files} "
               f"({result.rows:,} rows, {result.dropped_copies} crash copies dropped); "
               f"{remaining} files in {folder / 'events'}.")
