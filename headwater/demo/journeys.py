"""`headwater demo`'s journey replay: the declared journeys run over the world's last days.

The world's events already sit in raw.events with their historical received_at, so the demo
replays them through the same `FastPath.step()` the worker runs, with a ManualClock moving in
ticks from `as_of - days` to `as_of`, sending to local stand-ins. Two deliberate differences
from live running, both because the published profiles are the world as of its end:
`exit.on_profile_order` is off (a profile's last order may lie in the replay's future; the
`Order Completed` events end instances at the right moment instead), and the journey state and
cap ledger start empty on every demo run, like the warehouse.

The world's orders were drawn before any journey ran, so the replay adds the customers' answers
(headwater/demo/response.py): a delivered cart message is followed, with a stated probability,
by that cart's checkout, landed in raw.events and raw.orders during the replay. The journey
exits on it like on any checkout, and the report attributes its revenue to the send; held-out
customers get no messages and so no answers, which is the lift the report should find.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.table import Table

from activations.caps import CapLedger
from activations.lock import SyncLock
from headwater.config import Settings
from headwater.demo.response import Responder, ResponseModel
from headwater.demo.standins import DemoStandins
from headwater.warehouse import connect
from journeys.clock import ManualClock
from journeys.config import JourneysFile, load_journeys
from journeys.engine import FastPath
from journeys.instances import StepResult
from journeys.profiles import ProfileLookup
from journeys.runtime import LOCK_NAME, FastPathLocations
from journeys.sources import TableSource
from journeys.state import open_state


def _replay_config(config: JourneysFile) -> JourneysFile:
    journeys = [j.model_copy(update={"exit": j.exit.model_copy(update={"on_profile_order":
                                                                        False})})
                for j in config.journeys]
    return config.model_copy(update={"journeys": journeys})


@dataclass(frozen=True)
class Replay:
    """What a replay did: a table of every decision, and the checkouts the messages earned."""

    table: Table
    recoveries: int


def replay_journeys(settings: Settings, when: datetime, *, seed: int, days: int = 14,
                    tick: timedelta = timedelta(minutes=10),
                    response: ResponseModel | None = None) -> Replay:
    """Run every journey over the world's last `days`, its customers answering the cart
    messages (`response`); what each step did and how many checkouts landed."""
    response = response or ResponseModel()
    locations = FastPathLocations.from_settings(settings)
    config = _replay_config(load_journeys(locations.journeys_file))
    for path in (locations.state, locations.ledger):
        for stale in (path, path.with_name(path.name + "-wal"), path.with_name(path.name +
                                                                               "-shm")):
            stale.unlink(missing_ok=True)
    start = when - timedelta(days=days)
    kinds = sorted({s.action.destination.kind for j in config.journeys for s in j.steps})
    totals = StepResult()
    with SyncLock(locations.lock_dir, LOCK_NAME), \
            DemoStandins(kinds, settings.duckdb_path.parent / "standins" / "journeys") as st:
        # Read-write, like the rest of the demo: this process may still hold the file.
        warehouse = connect(settings.duckdb_path, wait_seconds=30)
        state = open_state(locations.state)
        ledger = CapLedger(locations.ledger, config.frequency_caps)
        clock = ManualClock(start)
        events = (f"(select * from raw.events where received_at > "
                  f"timestamp '{start.isoformat(sep=' ')}')")
        fast = FastPath(state, config, TableSource(warehouse, events),
                        ProfileLookup(locations.published), clock, ledger=ledger,
                        activity_dir=locations.activity,
                        environ=st.destinations_environ(
                            [s.action.destination for j in config.journeys for s in j.steps],
                            os.environ))
        # Journeys about a cart: their messages are what a checkout can answer.
        responder = Responder(state, warehouse,
                              {j.name for j in config.journeys if j.trigger.key == "cart_id"},
                              seed=seed, model=response)
        try:
            moment = start
            while moment < when:
                moment = min(moment + tick, when)
                clock.set(moment)
                totals.add(fast.run_until_idle())
                responder.respond(until=when)
            fast.flush_activity()
            rows = state.execute(
                """select journey, coalesce(step, ''), event, count(*) from journal
                group by 1, 2, 3 order by 1, 2, 3"""
            ).fetchall()
        finally:
            fast.close()
            ledger.close()
            state.close()
            warehouse.close()
    table = Table(title=f"Journeys replayed over the last {days} days "
                  f"({totals.events:,} events, {totals.sent:,} sent)", title_justify="left",
                  caption=f"{responder.landed:,} checkouts answered a message (the demo's "
                  f"response model: {response.describe()})", caption_justify="left")
    for col in ("journey", "step", "decision", "count"):
        table.add_column(col, justify="right" if col == "count" else "left")
    for journey, step, event, count in rows:
        table.add_row(journey, step, event, f"{count:,}")
    return Replay(table, responder.landed)

