"""A tiny world for the measurement models: raw rows and activity feed files written by hand,
built with real dbt on a real DuckDB file in two steps (identity first, because sync deliveries
carry the profile_id that identity resolution gives).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from headwater import activity
from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.warehouse import create_raw_tables

AS_OF = datetime(2026, 11, 1, 12, 0, 0)
MEASUREMENT = ["path:models/staging/activity", "path:models/marts/measurement"]


def identify(user_id: str, at: datetime) -> tuple:
    """An identify message that gives `user_id` an email (so it becomes a profile)."""
    return (f"id-{user_id}", "identify", None, user_id, None, None,
            json.dumps({"email": f"{user_id}@example.com"}), None, json.dumps({}), at, at)


def order(order_id: str, user_id: str | None, total: float, at: datetime,
          status: str = "completed") -> tuple:
    # No user: a guest who typed a placeholder email, which identity resolution never uses.
    email = f"{user_id}@example.com" if user_id else "test@test.com"
    return (order_id, email, None, user_id, total, "USD", status, at)


def delivery(key: str, flow: str, at: datetime, *, profile_id: str | None = None,
             user_id: str | None = None, channel: str = "email", destination: str = "webhook",
             action: str = "send", status: str = "delivered", attempt: int = 1,
             source: str | None = None) -> dict[str, Any]:
    journey, _, step = flow.partition(".")
    src = source or ("journey" if step else "sync")
    return {
        "source": src, "flow": flow, "journey": journey if step else None,
        "step": step or None, "channel": channel, "destination": destination,
        "run_id": f"run-{key}", "idempotency_key": key,
        "profile_id": profile_id,
        "identifier_type": "profile_id" if profile_id else "user_id",
        "identifier_value": profile_id or user_id, "action": action, "status": status,
        "attempt": attempt, "response_code": 200 if status == "delivered" else 400,
        "attempted_at": at,
    }


def build(tmp: Path, events: list[tuple], orders: list[tuple],
          feed: Callable[[dict[str, str], Path], None]) -> duckdb.DuckDBPyConnection:
    """Land the raw rows, build identity, write the feed (`feed(profile_of_user, folder)`),
    build the measurement models and their tests; returns a connection to the warehouse."""
    db = tmp / "wh.duckdb"
    con = duckdb.connect(str(db))
    create_raw_tables(con)
    if events:
        con.executemany("insert into raw.events values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        events)
    if orders:
        con.executemany("insert into raw.orders values (?, ?, ?, ?, ?, ?, ?, ?, '[]')", orders)
    con.close()
    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)})
    common = ["--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs"),
              "--vars", json.dumps({"as_of": AS_OF.isoformat(sep=" ")})]
    # Upstream parts test themselves in their own suites: seeds and models only here.
    run_dbt("build", ["--select", "+int_profile_orders", "+stg_consent", "+stg_crm_contacts",
                      "--resource-type", "seed",
                      "--resource-type", "model", *common], settings)
    con = duckdb.connect(str(db))
    profiles = dict(con.execute(
        "select identifier_value, profile_id from identity_map where identifier_type = 'user_id'"
    ).fetchall())
    con.close()
    feed(profiles, activity.activity_dir(settings))
    run_dbt("build", ["--select", *MEASUREMENT, "--indirect-selection", "cautious", *common],
            settings)
    # dbt-duckdb keeps its connection open in this process: open with the same configuration.
    return duckdb.connect(str(db))

