"""Running the fast path: who may step, and the long-lived worker.

One step at a time, machine-wide: a step takes the fast-path lock (an flock, released by the
kernel even on SIGKILL) and owns the journey state file while it holds it. Two drivers run the
same `FastPath.step()`:
- `headwater fastpath`: a long-lived worker that holds the lock and steps every few
  milliseconds (Dagster's sensor loop ticks every 5 s at best and a run takes seconds to
  start, DESIGN.md), so a landed event reaches its destination in milliseconds;
- the Dagster sensor `fastpath_sensor` (orchestration/fastpath.py): on each tick it tries the
  lock; when the worker holds it, the sensor only reports the worker's activity; when the
  worker is down, the sensor steps itself until caught up, so nothing waits for the worker.
Both read and advance the same durable watermark under the same lock, so they never act on
one event twice.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from activations.caps import CapLedger, ledger_path
from activations.lock import SyncAlreadyRunningError, SyncLock
from collector.config import default_landing_dir
from headwater import activity, snapshots
from headwater.config import Settings
from journeys.clock import Clock, SystemClock
from journeys.config import journeys_path, load_journeys
from journeys.engine import FastPath
from journeys.instances import StepResult
from journeys.profiles import ProfileLookup
from journeys.sources import EventSource, LandingSource
from journeys.state import journey_state_path, open_state

log = logging.getLogger(__name__)
LOCK_NAME = "fastpath"
# The longest the worker idles without stepping, when events, answers and due times all wake
# it sooner: the safety net for what nothing signals (a new publish, a lost watch event).
IDLE_SECONDS = 0.05


class FastPathBusyError(RuntimeError):
    """Another process (the worker, or a sensor tick) is stepping right now."""


@dataclass(frozen=True)
class FastPathLocations:
    """Every file the fast path reads or writes, resolved once from Settings."""

    state: Path  # journey state (DuckDB), owned while the lock is held
    lock_dir: Path  # where the fast-path lock lives (next to the warehouse)
    landing: Path  # the collector's landing folder (events in)
    published: Path  # published snapshots (identity_map, customer_profiles)
    activity: Path  # the activity feed (journal and deliveries out)
    ledger: Path  # the frequency-cap ledger shared with syncs
    journeys_file: Path  # journeys.yml

    @classmethod
    def from_settings(cls, settings: Settings) -> FastPathLocations:
        return cls(
            state=journey_state_path(settings),
            lock_dir=settings.duckdb_path.parent,
            landing=default_landing_dir(),
            published=snapshots.published_dir(settings),
            activity=activity.activity_dir(settings),
            ledger=ledger_path(settings),
            journeys_file=journeys_path(settings.dbt_project_dir),
        )


@contextlib.contextmanager
def open_fastpath(
    locations: FastPathLocations,
    *,
    clock: Clock | None = None,
    source: EventSource | None = None,
    environ: Mapping[str, str] | None = None,
    long_lived: bool = False,
) -> Iterator[FastPath]:
    """Take the lock (FastPathBusyError if held), open the state, yield a ready FastPath.
    `long_lived` (the worker): new publishes load on a thread (ProfileLookup), feed files
    and checkpoints are written behind (journeys/feed.py) and sends go out on a thread per step
    (journeys/dispatch.py), so a step waits for none of them."""
    lock = SyncLock(locations.lock_dir, LOCK_NAME)
    try:
        lock.acquire()
    except SyncAlreadyRunningError:
        raise FastPathBusyError(
            f"The fast path is being stepped by another process (lock {lock.path}): the "
            "`headwater fastpath` worker or a Dagster sensor tick. Stop it, or let it work."
        ) from None
    try:
        config = load_journeys(locations.journeys_file)
        con = open_state(locations.state)
        ledger = CapLedger(locations.ledger, config.frequency_caps)
        # The long-lived worker subscribes to the collector's handoff (collector/handoff.py).
        owned = source is None
        if source is None:
            source = LandingSource(locations.landing, handoff=long_lived)
        fast = FastPath(
            con, config, source,
            ProfileLookup(locations.published, background=long_lived),
            clock or SystemClock(), ledger=ledger,
            activity_dir=locations.activity, environ=environ, background_dispatch=long_lived,
        )
        if long_lived:
            fast.write_behind(locations.state)
        try:
            yield fast
            fast.finish()
            fast.flush_activity()
        finally:
            fast.close()
            if owned:
                source.close()
            ledger.close()
            con.close()
    finally:
        lock.release()


def open_cap_ledger(settings: Settings) -> CapLedger:
    """The frequency-cap ledger with the caps of journeys.yml, for sync runs to share."""
    locations = FastPathLocations.from_settings(settings)
    return CapLedger(locations.ledger, load_journeys(locations.journeys_file).frequency_caps)


def run_worker(
    locations: FastPathLocations,
    *,
    interval_seconds: float = 0.002,
    flush_seconds: float = 1.0,
    stop: threading.Event | None = None,
    max_seconds: float | None = None,
    on_step: Callable[[StepResult], None] | None = None,
) -> StepResult:
    """Step until `stop` is set (or SIGTERM/SIGINT, or `max_seconds`); returns the totals.

    Between steps the worker waits in poll() for what wakes it (FastPath.wait): a landed file
    or handed-over rows, a send's answer, the next due step or retry; `interval_seconds` is
    how long it waits at most when the source cannot signal new events. Every `flush_seconds`
    the activity feed is handed to the feed thread, which also checkpoints the state
    (journeys/feed.py); on the way out it is flushed inline.
    """
    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    totals = StepResult()
    started = time.monotonic()
    with open_fastpath(locations, long_lived=True) as fast:
        last_flush = time.monotonic()
        while not stop.is_set():
            one = fast.step()
            totals.add(one)
            if on_step is not None:
                on_step(one)
            if time.monotonic() - last_flush >= flush_seconds:
                fast.flush_activity(wait=False)
                last_flush = time.monotonic()
            if max_seconds is not None and time.monotonic() - started >= max_seconds:
                break
            # After an active step too: what it left to do is signalled or due, and poll()
            # returns at once then.
            fast.wait(interval_seconds, IDLE_SECONDS)
        totals.add(fast.finish())
    return totals
