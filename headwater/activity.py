"""The activity feed: what was sent and what journeys did, as append-only Parquet files.

Contract: docs/contracts.md, "Activity feed". Layout of the activity folder (default
`<warehouse dir>/activity`, or HEADWATER_ACTIVITY_DIR):

    deliveries/<ns>-<pid>-<rand>.parquet       one row per delivery attempt (DELIVERY_SCHEMA)
    journey_events/<ns>-<pid>-<rand>.parquet   one row per journey decision (JOURNEY_EVENT_SCHEMA)
    */00000000000000000000-schema.parquet      zero rows: keeps `*.parquet` globs valid

Why files: sync state and journey state live in DuckDB files that one process at a time holds,
and dbt holds the warehouse during builds; so writers append immutable files here and dbt reads
the folders (dbt_project/macros/measurement/activity_relation.sql).

API (small on purpose; sync export and the journeys runtime both use it):

    folder = activity_dir(settings)
    append_deliveries(folder, rows_or_table)      # list of dicts or a pyarrow Table
    append_journey_events(folder, rows_or_table)
    rows_table(kind, tuples)                      # tuples in the schema's order -> Table

Atomicity: a file is written under a hidden name (`.<name>.<pid>-<random>.tmp`, no glob
matches it), fsynced, renamed into place and the directory fsynced, so a reader sees a file
whole or not at all.
Readers deduplicate on the contract key ((idempotency_key, attempt) for deliveries, event_id
for journey events): a writer that crashes after appending but before recording that it did
appends the same rows again next time, never fewer.
Timestamps are naive UTC (`timestamp[us]`), like raw.events.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import pyarrow as pa

from collector import landing
from headwater.config import Settings

ACTIVITY_DIR_ENV = "HEADWATER_ACTIVITY_DIR"
DELIVERIES = "deliveries"
JOURNEY_EVENTS = "journey_events"
SCHEMA_FILE = f"{0:020d}-schema.parquet"

DELIVERY_SCHEMA = pa.schema(
    [
        ("source", pa.string()),
        ("flow", pa.string()),
        ("journey", pa.string()),
        ("step", pa.string()),
        ("channel", pa.string()),
        ("destination", pa.string()),
        ("run_id", pa.string()),
        ("idempotency_key", pa.string()),
        ("profile_id", pa.string()),
        ("identifier_type", pa.string()),
        ("identifier_value", pa.string()),
        ("action", pa.string()),
        ("status", pa.string()),
        ("attempt", pa.int32()),
        ("response_code", pa.int32()),
        ("error", pa.string()),
        ("external_id", pa.string()),
        ("attempted_at", pa.timestamp("us")),
    ]
)
JOURNEY_EVENT_SCHEMA = pa.schema(
    [
        ("event_id", pa.string()),
        ("journey", pa.string()),
        ("instance_id", pa.string()),
        ("entry_key", pa.string()),
        ("profile_id", pa.string()),
        ("identifier_type", pa.string()),
        ("identifier_value", pa.string()),
        ("holdout", pa.bool_()),
        ("event", pa.string()),
        ("step", pa.string()),
        ("reason", pa.string()),
        ("trigger_message_id", pa.string()),
        ("occurred_at", pa.timestamp("us")),
        ("due_at", pa.timestamp("us")),
        ("latency_ms", pa.float64()),
        ("recorded_at", pa.timestamp("us")),
    ]
)
SCHEMAS: dict[str, pa.Schema] = {DELIVERIES: DELIVERY_SCHEMA, JOURNEY_EVENTS: JOURNEY_EVENT_SCHEMA}

Rows: TypeAlias = "pa.Table | Sequence[Mapping[str, Any]]"


def activity_dir(
    settings: Settings | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """HEADWATER_ACTIVITY_DIR, else `<warehouse dir>/activity` (the warehouse of `settings`)."""
    env = os.environ if environ is None else environ
    override = env.get(ACTIVITY_DIR_ENV)
    if override:
        return Path(override).expanduser().resolve()
    settings = settings or Settings.from_env(dict(env))
    return settings.duckdb_path.parent / "activity"


def ensure_layout(folder: Path) -> None:
    """Create deliveries/ and journey_events/ with their zero-row schema files (idempotent)."""
    for kind, schema in SCHEMAS.items():
        sub = folder / kind
        sub.mkdir(parents=True, exist_ok=True)
        if not (sub / SCHEMA_FILE).exists():
            landing.write_atomic(sub, SCHEMA_FILE, schema.empty_table())


def append_deliveries(folder: Path, rows: Rows) -> Path | None:
    """Append delivery attempts (DELIVERY_SCHEMA columns); returns the file, None if no rows."""
    return append(folder, DELIVERIES, rows)


def append_journey_events(folder: Path, rows: Rows) -> Path | None:
    """Append journey decisions (JOURNEY_EVENT_SCHEMA columns); returns the file, None if none."""
    return append(folder, JOURNEY_EVENTS, rows)


def append(folder: Path, kind: str, rows: Rows) -> Path | None:
    """Write `rows` as one new immutable file of `kind`, atomically.

    A Table is cast to the schema (extra columns are an error: they would be silently lost);
    dicts may leave out nullable columns. Names start with the wall-clock nanoseconds, so a
    listing sorts in append order, then pid and a random part so that concurrent writers never
    collide.
    """
    schema = SCHEMAS[kind]
    table = _as_table(rows, schema)
    if table.num_rows == 0:
        return None
    ensure_layout(folder)
    name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"
    return landing.write_atomic(folder / kind, name, table)


def rows_table(kind: str, rows: Sequence[Sequence[Any]]) -> pa.Table:
    """Rows as tuples in the schema's column order, as a Table of `kind`: converted a column
    at a time, without a dict per row (the journeys worker hands its rows over like this).
    Aware datetimes are converted to naive UTC, like `append` does for dicts."""
    schema = SCHEMAS[kind]
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in schema]
    if len(columns) != len(schema):
        raise ValueError(f"{kind} rows have {len(columns)} columns, the contract {len(schema)}")
    return pa.Table.from_arrays(
        [pa.array(values, f.type) for values, f in zip(columns, schema, strict=True)],
        schema=schema)


def read_sql(folder: Path, kind: str) -> str:
    """A DuckDB FROM-clause expression over every file of `kind` (raw: not deduplicated)."""
    ensure_layout(folder)
    glob = str(folder / kind / "*.parquet").replace("'", "''")
    return f"(select * from read_parquet('{glob}', union_by_name = true))"


def _as_table(rows: Rows, schema: pa.Schema) -> pa.Table:
    if isinstance(rows, pa.Table):
        extra = set(rows.column_names) - set(schema.names)
        if extra:
            raise ValueError(f"columns not in the activity contract: {sorted(extra)}")
        columns = [
            rows.column(f.name).cast(f.type) if f.name in rows.column_names
            else pa.nulls(rows.num_rows, f.type)
            for f in schema
        ]
        return pa.Table.from_arrays(columns, schema=schema)
    for row in rows:
        extra = set(row) - set(schema.names)
        if extra:
            raise ValueError(f"columns not in the activity contract: {sorted(extra)}")
    return pa.Table.from_pylist([_naive(dict(r)) for r in rows], schema=schema)


def _naive(row: dict[str, Any]) -> dict[str, Any]:
    # The contract is naive UTC; an aware datetime is converted rather than silently shifted.
    for key, value in row.items():
        if isinstance(value, datetime) and value.tzinfo is not None:
            row[key] = value.astimezone(UTC).replace(tzinfo=None)
    return row
