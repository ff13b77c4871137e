"""`headwater fastpath`: the long-lived fast-path worker (journeys/runtime.py)."""

from __future__ import annotations

import logging
import threading
import time

import click

from headwater.config import Settings
from headwater.gcfreeze import freeze_periodically
from journeys.config import JourneyConfigError
from journeys.instances import StepResult
from journeys.runtime import FastPathBusyError, FastPathLocations, run_worker


@click.command()
@click.option("--interval-ms", type=float, default=2.0, show_default=True,
              help="Pause after a step that found nothing to do.")
@click.option("--seconds", type=float, default=None,
              help="Stop after this long (default: until SIGTERM / Ctrl-C).")
@click.option("--verbose", is_flag=True, help="Print every step that did something.")
def fastpath(interval_ms: float, seconds: float | None, verbose: bool) -> None:
    """Run journeys on events as they land (collector landing folder), in milliseconds.

    Reads journeys from dbt_project/journeys.yml ($HEADWATER_JOURNEYS_FILE), events from the
    landing folder, profiles from the published snapshots, and keeps its state in
    journey_state.sqlite next to the warehouse. Only one process steps at a time: while this
    worker runs, the Dagster sensor `fastpath_sensor` only reports its activity.
    """
    logging.basicConfig(level=logging.INFO)
    locations = FastPathLocations.from_settings(Settings.from_env())
    click.echo(f"fast path: landing {locations.landing}, state {locations.state}")
    started = time.monotonic()
    frozen = threading.Event()
    freeze_periodically(frozen)  # no full-heap GC pauses in the worker's steps

    def report(step: StepResult) -> None:
        if verbose and step.active:
            click.echo(
                f"events {step.events} entered {step.entered} restarted {step.restarted} "
                f"exited {step.exited} sent {step.sent} cancelled {step.cancelled} "
                f"failed {step.failed} ({step.seconds * 1000:.1f} ms)"
            )

    try:
        totals = run_worker(locations, interval_seconds=interval_ms / 1000.0,
                            max_seconds=seconds, on_step=report)
    except (FastPathBusyError, JourneyConfigError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        frozen.set()
    click.echo(
        f"stopped after {time.monotonic() - started:.1f} s: {totals.events} events, "
        f"{totals.entered} entered, {totals.sent} sent, {totals.exited} exited, "
        f"{totals.cancelled} cancelled, {totals.failed} failed"
    )
