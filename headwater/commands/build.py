"""`headwater build`: regenerate audience models, then dbt build on the configured warehouse."""

from __future__ import annotations

import click

from headwater.audiences import (
    AudienceDefinitionError,
    CatalogError,
    compile_audiences,
    default_work_dir,
)
from headwater.config import Settings
from headwater.dbt import DbtRunError, run_dbt
from headwater.snapshots import publish


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("dbt_args", nargs=-1, type=click.UNPROCESSED)
def build(dbt_args: tuple[str, ...]) -> None:
    """Run `dbt build` on the warehouse at $HEADWATER_DUCKDB_PATH.

    Audience models are regenerated from selectors.yml first (only changed files are written).
    Selection flags pass through to dbt: `headwater build --select +identity_map`.
    """
    settings = Settings.from_env()
    try:
        compiled = compile_audiences(settings.dbt_project_dir, default_work_dir(settings))
    except (AudienceDefinitionError, CatalogError) as exc:
        raise click.ClickException(f"Audiences: {exc}") from exc
    changed = len(compiled.written) + len(compiled.removed)
    if changed:
        click.echo(f"Audiences: regenerated {changed} files from selectors.yml.")
    click.echo(f"Building on target {settings.target} ({settings.duckdb_path})")
    try:
        summary = run_dbt("build", list(dbt_args), settings)
    except DbtRunError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"dbt build: {len(summary.nodes)} nodes, all passed.")
    # Readers (syncs, sensors, the fast path) never open the warehouse file, which the next build
    # will hold: they read these snapshots (see headwater/snapshots.py).
    manifest = publish(settings)
    click.echo(f"Published snapshot {manifest.seq}: {', '.join(sorted(manifest.models))}")
