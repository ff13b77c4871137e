"""The DuckDB warehouse file: the raw landing contract and connections to it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb

# The raw input contract (DESIGN.md). Loaders land these tables; every dbt model reads them.
RAW_DDL: tuple[str, ...] = (
    "create schema if not exists raw",
    """create table if not exists raw.events (
        message_id varchar,
        type varchar,
        event varchar,
        user_id varchar,
        anonymous_id varchar,
        previous_id varchar,
        traits json,
        properties json,
        context json,
        "timestamp" timestamp,
        received_at timestamp
    )""",
    """create table if not exists raw.orders (
        order_id varchar,
        customer_email varchar,
        customer_phone varchar,
        user_id varchar,
        total decimal(18, 2),
        currency varchar,
        status varchar,
        created_at timestamp,
        line_items json
    )""",
    """create table if not exists raw.crm_contacts (
        contact_id varchar,
        email varchar,
        phone varchar,
        first_name varchar,
        last_name varchar,
        loyalty_tier varchar,
        loyalty_points integer,
        updated_at timestamp
    )""",
    """create table if not exists raw.consent (
        identifier_type varchar,
        identifier_value varchar,
        channel varchar,
        granted boolean,
        recorded_at timestamp
    )""",
)


def scalar(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> Any:
    """The first column of the first row of a query that always returns one (a count, a max)."""
    row = con.execute(sql, params or []).fetchone()
    if row is None:
        raise RuntimeError(f"query returned no row: {sql}")
    return row[0]


def create_raw_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create the raw landing tables if they are missing (idempotent)."""
    for statement in RAW_DDL:
        con.execute(statement)


def connect(
    path: Path, *, read_only: bool = False, wait_seconds: float = 0.0
) -> duckdb.DuckDBPyConnection:
    """Open the warehouse file, waiting up to `wait_seconds` while another process holds its lock.

    DuckDB lets one process hold a database file at a time (even read-only opens fail while a
    writer has it), so callers that can skip a beat (sensors) pass a small wait and handle the
    error; callers that must write (the demo loader) pass a longer one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"The warehouse {path} is held by another process ({exc}). "
                    "Wait for the running dbt build or sync to finish, or point "
                    "HEADWATER_DUCKDB_PATH at another file."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


class WarehouseBusyError(RuntimeError):
    """Another process holds the DuckDB file's lock."""
