"""`headwater demo`: generate a synthetic e-commerce world, build it, summarise it."""

from __future__ import annotations

import click


@click.command()
@click.option("--customers", default=2000, show_default=True, help="How many real customers.")
@click.option("--seed", default=7, show_default=True, help="Random seed; same seed, same world.")
def demo(customers: int, seed: int) -> None:
    """Generate the demo world into the warehouse, build every model and print a summary."""
    raise click.ClickException("not implemented yet")
