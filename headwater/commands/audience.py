"""`headwater audience`: compile, list and preview the audiences declared in selectors.yml."""

from __future__ import annotations

import click
from rich.markup import escape
from rich.table import Table

from headwater.audiences import (
    Audience,
    AudienceDefinitionError,
    CatalogError,
    WarehouseNotBuiltError,
    compile_audiences,
    default_work_dir,
    load_audiences,
    member_counts,
    preview,
)
from headwater.commands.console import wide_console
from headwater.config import Settings
from headwater.warehouse import WarehouseBusyError

# How long list/preview wait for a running dbt build to release the DuckDB file.
WAIT_SECONDS = 5.0


def _load(settings: Settings) -> list[Audience]:
    try:
        audiences, _ = load_audiences(settings.dbt_project_dir, default_work_dir(settings))
    except (AudienceDefinitionError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from exc
    return audiences


@click.group()
def audience() -> None:
    """Audiences defined as dbt selectors (selectors.yml, names starting with `audience_`)."""


@audience.command("compile")
def compile_command() -> None:
    """Regenerate models/audiences/ from selectors.yml (only changed files are written)."""
    settings = Settings.from_env()
    try:
        result = compile_audiences(settings.dbt_project_dir, default_work_dir(settings))
    except (AudienceDefinitionError, CatalogError) as exc:
        raise click.ClickException(str(exc)) from exc
    for path in result.written:
        click.echo(f"wrote    {path}")
    for path in result.removed:
        click.echo(f"removed  {path}")
    click.echo(
        f"{len(result.audiences)} audiences: {len(result.written)} files written, "
        f"{len(result.unchanged)} unchanged, {len(result.removed)} removed."
    )


def _counts(settings: Settings, names: list[str]) -> tuple[dict[str, int | None], str | None]:
    """Member counts, or a note saying why there are none."""
    if settings.target != "duckdb":
        return {}, f"Member counts are read from DuckDB; target is {settings.target}."
    try:
        return member_counts(settings.duckdb_path, names, wait_seconds=WAIT_SECONDS), None
    except (WarehouseNotBuiltError, WarehouseBusyError) as exc:
        return {}, str(exc)


@audience.command("list")
def list_command() -> None:
    """Every audience: name, description, definition and member count (if built)."""
    settings = Settings.from_env()
    audiences = _load(settings)
    console = wide_console()
    if not audiences:
        console.print(
            f"No audiences in {settings.dbt_project_dir / 'selectors.yml'}: add a selector "
            "named audience_<something> (see the comments in that file)."
        )
        return
    counts, note = _counts(settings, [a.name for a in audiences])
    table = Table(title="Audiences")
    table.add_column("audience", min_width=30)
    table.add_column("definition", no_wrap=True)
    table.add_column("members", justify="right", no_wrap=True)
    for a in audiences:
        count = counts.get(a.name)
        shown = f"{count:,}" if count is not None else "not built"
        label = f"[bold]{escape(a.name)}[/bold]"
        if a.description:
            label += f"\n[dim]{escape(a.description)}[/dim]"
        table.add_row(label, escape(a.definition), shown)
    console.print(table)
    if note:
        console.print(note)
    elif any(v is None for v in counts.values()):
        console.print("Some audiences are not built yet: run `headwater build`.")


@audience.command("preview")
@click.argument("name")
@click.option(
    "--limit",
    default=10,
    show_default=True,
    type=click.IntRange(min=0),
    help="How many sample members to show.",
)
def preview_command(name: str, limit: int) -> None:
    """One audience: its definition, size and sample members."""
    settings = Settings.from_env()
    audiences = {a.name: a for a in _load(settings)}
    if name not in audiences:
        known = ", ".join(sorted(audiences)) or "(none)"
        raise click.ClickException(
            f"No audience named {name!r} in selectors.yml. Audiences: {known}. "
            "`headwater audience list` shows them all."
        )
    a = audiences[name]
    console = wide_console()
    console.print(f"[bold]{escape(a.name)}[/bold]: {escape(a.description)}")
    console.print(f"definition: {escape(a.definition)}")
    console.print(f"segments:   {', '.join(a.segments)}")
    if settings.target != "duckdb":
        raise click.ClickException(
            f"Previews read the DuckDB warehouse; target is {settings.target}."
        )
    try:
        p = preview(settings.duckdb_path, name, limit=limit, wait_seconds=WAIT_SECONDS)
    except (WarehouseNotBuiltError, WarehouseBusyError) as exc:
        raise click.ClickException(str(exc)) from exc
    console.print(f"size:       {p.size:,} members")
    table = Table(title=f"First {len(p.rows)} members of {name}")
    for column in p.columns:
        # ids are what people copy from a preview: never cut them
        table.add_column(
            column, no_wrap=True, overflow="fold" if column == "profile_id" else "ellipsis"
        )
    for row in p.rows:
        table.add_row(*("" if v is None else escape(str(v)) for v in row))
    console.print(table)
