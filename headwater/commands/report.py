"""`headwater report`: write the measurement report (a static HTML page) and print its path."""

from __future__ import annotations

from pathlib import Path

import click

from headwater.config import Settings
from headwater.measurement.figures import FiguresUnavailable
from headwater.measurement.report import write_report


@click.command()
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the HTML file [default: <warehouse dir>/reports/"
                   "headwater-report.html].")
def report(out: Path | None) -> None:
    """Write the report: revenue per send, journey funnels, holdout lift, monitoring.

    It reads the measurement models as of the last build (the published snapshots), so it works
    while a build runs; the page is self-contained (no network when opened).
    """
    try:
        path = write_report(Settings.from_env(), out)
    except FiguresUnavailable as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Report written to {path}")
