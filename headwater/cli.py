"""The `headwater` command. Each concern keeps its subcommands in `headwater/commands/`."""

from __future__ import annotations

import click

from headwater.commands.audience import audience
from headwater.commands.build import build
from headwater.commands.collect import collect
from headwater.commands.compact import compact
from headwater.commands.demo import demo
from headwater.commands.fastpath import fastpath
from headwater.commands.journey import journey
from headwater.commands.report import report
from headwater.commands.sync import sync
from headwater.commands.ui import ui


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="headwater")
def cli() -> None:
    """Headwater: identity, profiles, audiences and activation in your own warehouse."""


cli.add_command(build)
cli.add_command(collect)
cli.add_command(compact)
cli.add_command(demo)
cli.add_command(fastpath)
cli.add_command(journey)
cli.add_command(audience)
cli.add_command(report)
cli.add_command(sync)
cli.add_command(ui)


def main() -> None:
    cli()
