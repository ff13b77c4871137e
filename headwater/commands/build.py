"""`headwater build`: dbt build on the configured warehouse."""

from __future__ import annotations

import click

from headwater.config import Settings
from headwater.dbt import DbtRunError, run_dbt


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
def build(dbt_args: tuple[str, ...]) -> None:
    """Run `dbt build` on the warehouse at $HEADWATER_DUCKDB_PATH.

    Selection flags pass through to dbt: `headwater build --select +identity_map`.
    """
    settings = Settings.from_env()
    click.echo(f"Building on target {settings.target} ({settings.duckdb_path})")
    try:
        summary = run_dbt("build", list(dbt_args), settings)
    except DbtRunError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"dbt build: {len(summary.nodes)} nodes, all passed.")
