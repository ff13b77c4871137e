"""A warehouse with two weeks of sends from a sync and a journey with a holdout, built and
published, for the report tests (HTML and browser)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from measurement_world import build, delivery, identify, order

from headwater import activity
from headwater.config import Settings
from headwater.snapshots import publish

WEEK1 = datetime(2026, 10, 12, 9, 0, 0)
WEEK2 = WEEK1 + timedelta(days=7)
DAY = timedelta(days=1)
SUBJECTS = 24  # every fourth is held out


@dataclass
class ReportWorld:
    root: Path
    settings: Settings
    con: duckdb.DuckDBPyConnection


def _user(i: int) -> str:
    return f"u{i}"


def _feed(profiles: dict[str, str], folder: Path) -> None:
    deliveries: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for i in range(SUBJECTS):
        start = WEEK1 if i % 2 == 0 else WEEK2
        holdout = i % 4 == 3
        base = {"journey": "cart_abandonment", "instance_id": f"cart:{i}:0",
                "entry_key": f"cart-{i}", "profile_id": profiles[_user(i)],
                "identifier_type": "profile_id", "identifier_value": profiles[_user(i)],
                "holdout": holdout, "recorded_at": start}
        events.append({**base, "event_id": f"{i}-entered", "event": "entered",
                       "occurred_at": start})
        for n, step in enumerate(("reminder_1", "reminder_2")):
            at = start + timedelta(hours=1 + 23 * n)
            if holdout:
                events.append({**base, "event_id": f"{i}-{step}", "event": "step_held_out",
                               "step": step, "occurred_at": at, "due_at": at})
                continue
            if n == 1 and i % 3 == 0:
                events.append({**base, "event_id": f"{i}-{step}", "event": "step_skipped",
                               "step": step, "occurred_at": at, "due_at": at})
                continue
            events.append({**base, "event_id": f"{i}-{step}", "event": "step_sent",
                           "step": step, "occurred_at": at, "due_at": at,
                           "latency_ms": 40.0 + 3 * i + 50 * n})
            deliveries.append(delivery(f"j-{i}-{step}", f"cart_abandonment.{step}", at,
                                       profile_id=profiles[_user(i)],
                                       destination="sendgrid"))
        deliveries.append(delivery(f"w-{i}", "winback_email", start,
                                   profile_id=profiles[_user(i)],
                                   status="delivered" if i != 5 else "rejected"))
    deliveries.append({**delivery("w-5", "winback_email", WEEK2, profile_id=profiles[_user(5)],
                                  status="dead", attempt=2)})
    activity.append_deliveries(folder, deliveries)
    activity.append_journey_events(folder, events)


def _orders() -> list[tuple]:
    rows = []
    for i in range(SUBJECTS):
        start = WEEK1 if i % 2 == 0 else WEEK2
        if i % 3 != 2:
            rows.append(order(f"o{i}", _user(i), 20 + 5 * i, start + 2 * DAY))
    rows.append(order("o-none", "nobody", 70, WEEK2 + 3 * DAY))
    return rows


def build_report_world(root: Path) -> ReportWorld:
    events = [identify(_user(i), WEEK1 - 30 * DAY) for i in range(SUBJECTS)]
    events.append(identify("nobody", WEEK1 - 30 * DAY))
    con = build(root, events, _orders(), _feed)
    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(root / "wh.duckdb")})
    publish(settings, con=con)  # as `headwater build` does; this process holds the file
    return ReportWorld(root, settings, con)
