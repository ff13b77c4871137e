"""`headwater audience`: list and preview the audiences declared in selectors.yml."""

from __future__ import annotations

import click


@click.group()
def audience() -> None:
    """Audiences defined as dbt selectors."""
