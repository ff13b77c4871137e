"""`headwater journey`: what the declared journeys are, who is in them, and why.

Reads the journey state read-only (SQLite in WAL mode), so it works while the fast-path worker
runs; every line of `explain` is a journal row the step wrote when it decided.
"""

from __future__ import annotations

import click
from rich.table import Table

from headwater.commands.console import wide_console
from headwater.config import Settings
from journeys.config import JourneyConfigError, load_journeys
from journeys.runtime import FastPathLocations
from journeys.state import open_state_read_only


def _locations() -> FastPathLocations:
    return FastPathLocations.from_settings(Settings.from_env())


@click.group()
def journey() -> None:
    """Journeys declared in dbt_project/journeys.yml and their state."""


@journey.command("list")
def list_journeys() -> None:
    """Each journey: trigger, steps, holdout, and how many are in it now."""
    locations = _locations()
    try:
        config = load_journeys(locations.journeys_file)
    except JourneyConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    counts: dict[tuple[str, str], int] = {}
    if locations.state.exists():
        con = open_state_read_only(locations.state)
        try:
            counts = {(j, s): n for j, s, n in con.execute(
                "select journey, status, count(*) from instances group by journey, status")}
        finally:
            con.close()
    table = Table(title=f"Journeys ({locations.journeys_file})", title_justify="left")
    for col in ("journey", "trigger", "steps", "holdout", "active", "exited", "completed"):
        table.add_column(col)
    for j in config.journeys:
        trigger = ", ".join(j.trigger.events) or f"enters {j.trigger.audience}"
        if j.trigger.key:
            trigger += f" (per {j.trigger.key})"
        steps = " → ".join(f"{s.name} +{s.after}" for s in j.steps)
        table.add_row(j.name, trigger, steps, f"{j.holdout_percent:g}%",
                      *(f"{counts.get((j.name, s), 0):,}" for s in
                        ("active", "exited", "completed")))
    wide_console(160).print(table)
    caps = ", ".join(f"{c.max} {c.channel.value} per {c.per}" for c in config.frequency_caps)
    click.echo(f"frequency caps (journeys and append-mode syncs): {caps or 'none'}")


@journey.command()
@click.argument("who")
@click.option("--limit", default=200, show_default=True, help="Most recent decisions shown.")
def explain(who: str, limit: int) -> None:
    """Every decision about WHO: a profile id, email, user id, anonymous id or instance id."""
    locations = _locations()
    if not locations.state.exists():
        raise click.ClickException(f"No journey state at {locations.state}: the fast path "
                                   "has not run (`headwater fastpath`).")
    con = open_state_read_only(locations.state)
    try:
        rows = con.execute(
            """select j.occurred_at, j.journey, j.instance_id, j.event, j.step, j.reason,
                      j.holdout
            from journal j join instances i on i.instance_id = j.instance_id
            where ? in (i.instance_id, i.profile_id, i.email, i.user_id, i.anonymous_id,
                        i.identifier_value, i.entry_key)
            order by j.occurred_at desc, j.rowid desc limit ?""",
            [who.strip().lower() if "@" in who else who.strip(), limit],
        ).fetchall()
    finally:
        con.close()
    if not rows:
        raise click.ClickException(f"No journey decisions about {who!r}.")
    table = Table(title=f"Journey decisions about {who}", title_justify="left")
    for col in ("when (journey clock)", "journey", "instance", "decision", "step", "why"):
        table.add_column(col)
    for at, name, instance, event, step, reason, holdout in reversed(rows):
        why = (reason or "") + (" [holdout]" if holdout and event == "entered" else "")
        table.add_row(f"{at:%Y-%m-%d %H:%M:%S}", name, instance, event, step or "", why)
    wide_console(180).print(table)
