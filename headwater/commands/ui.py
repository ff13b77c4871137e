"""`headwater ui`: the Dagster UI (`dagster dev`) on the configured warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click

from headwater.config import Settings

CODE_LOCATION = "orchestration.definitions"


def dagster_home(settings: Settings) -> Path:
    """Dagster's instance (runs, event log, schedules) lives next to the warehouse it serves."""
    return settings.duckdb_path.parent / ".dagster"


def ui_command(host: str, port: int) -> list[str]:
    # The `dagster` next to this interpreter: the venv need not be activated.
    dagster = Path(sys.executable).parent / "dagster"
    return [str(dagster), "dev", "-m", CODE_LOCATION, "-h", host, "-p", str(port)]


def ui_environment(settings: Settings) -> dict[str, str]:
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "HEADWATER_DUCKDB_PATH": str(settings.duckdb_path),
        "HEADWATER_TARGET": settings.target,
        # dagster-dbt runs `dbt`, which sits next to this interpreter.
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
    }


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=3000, show_default=True, help="Port of the web UI.")
def ui(host: str, port: int) -> None:
    """Start the Dagster UI on the warehouse at $HEADWATER_DUCKDB_PATH.

    Every dbt model is an asset (tests as checks), every sync in syncs.yml an asset downstream
    of its audience; sensors, schedules and runs are under Automation and Runs. The Dagster
    instance is kept in `.dagster/` next to the warehouse.
    """
    settings = Settings.from_env()
    click.echo(f"Dagster UI for {settings.duckdb_path} on http://{host}:{port} (Ctrl-C stops it)")
    completed = subprocess.run(ui_command(host, port), env=ui_environment(settings), check=False)
    raise SystemExit(completed.returncode)
