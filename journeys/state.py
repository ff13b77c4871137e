"""Journey state: who is at which step, what is due, what was sent, why someone left.

It lives in its own file (`<warehouse dir>/journey_state.sqlite`, or
HEADWATER_JOURNEY_STATE_PATH), not in the warehouse file nor in the sync state file: dbt holds
the warehouse for a whole build and a sync run holds the sync state for its whole run, and the
fast path must not wait for either. Why SQLite and not DuckDB: the step commits twice per
micro-batch (intents and exits before sending, answers after), and a DuckDB statement costs
1-2 ms here (measured: an insert-or-replace with its commit 5.7 ms) against tens of µs in
SQLite, which is the difference between a 10 ms and a 50 ms step. WAL mode also lets readers
(`headwater journey`, tests) read while the worker writes; only steppers are serialized, by
the fast-path lock (journeys/runtime.py). `synchronous=normal`: see `open_state` for why that
is enough. dbt and the report read the decisions through the activity feed
(headwater/activity.py) that the owner appends to.

Tables:
    instances    one row per instance: subject, holdout, status (active|exited|completed), the
                 latest trigger, the next step and when it is due, why it ended
    cart_lines   items folded from the instance's trigger events (sku -> name, price, quantity)
    outbox       one row per intended action, committed before the request is made; the
                 idempotency key is stable, so a crash re-sends with the same key
    journal      every decision
    deliveries   every delivery attempt
    feed_marks   per table above, the rowid up to which its rows reached the activity feed
    watermarks   per event source: the received_at up to which events were processed
    source_files per event source: the files read within its lookback window (journeys/sources.py)
"""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime
from pathlib import Path

from headwater import activity
from headwater.config import Settings

CATALOG = "main"

# Timestamps are stored as ISO text (naive UTC) and read back as datetimes; booleans as 0/1.
# str(datetime) is isoformat(sep=" "), without a Python frame per value (~20 per event).
sqlite3.register_adapter(datetime, str)
sqlite3.register_converter("timestamp", lambda b: datetime.fromisoformat(b.decode()))
sqlite3.register_converter("boolean", lambda b: b not in (b"0", b""))

_DDL = (
    f"""create table if not exists {CATALOG}.instances (
        instance_id varchar primary key,
        journey varchar not null,
        entry_key varchar not null,
        identifier_type varchar,
        identifier_value varchar,
        profile_id varchar,
        user_id varchar,
        anonymous_id varchar,
        email varchar,
        phone varchar,
        first_name varchar,
        holdout boolean not null,
        status varchar not null,
        entered_at timestamp not null,
        triggered_at timestamp not null,
        trigger_message_id varchar,
        trigger_received_at timestamp,
        next_step integer not null,
        next_due_at timestamp,
        memberships varchar,
        ended_at timestamp,
        end_reason varchar,
        updated_at timestamp not null
    )""",
    f"""create table if not exists {CATALOG}.cart_lines (
        instance_id varchar not null,
        sku varchar not null,
        name varchar,
        price real,
        quantity integer not null
    )""",
    f"""create table if not exists {CATALOG}.outbox (
        idempotency_key varchar primary key,
        instance_id varchar not null,
        journey varchar not null,
        step varchar not null,
        action varchar not null,
        channel varchar not null,
        destination varchar not null,
        profile_id varchar,
        identifier_type varchar,
        identifier_value varchar,
        fields text not null,
        status varchar not null,
        attempts integer not null,
        due_at timestamp not null,
        ready_at timestamp,
        next_attempt_at timestamp not null,
        response_code integer,
        error varchar,
        external_id varchar,
        created_at timestamp not null,
        updated_at timestamp not null
    )""",
    f"""create table if not exists {CATALOG}.journal (
        event_id varchar primary key,
        journey varchar,
        instance_id varchar,
        entry_key varchar,
        profile_id varchar,
        identifier_type varchar,
        identifier_value varchar,
        holdout boolean,
        event varchar,
        step varchar,
        reason varchar,
        trigger_message_id varchar,
        occurred_at timestamp,
        due_at timestamp,
        latency_ms real,
        recorded_at timestamp
    )""",
    f"""create table if not exists {CATALOG}.deliveries (
        source varchar,
        flow varchar,
        journey varchar,
        step varchar,
        channel varchar,
        destination varchar,
        run_id varchar,
        idempotency_key varchar,
        profile_id varchar,
        identifier_type varchar,
        identifier_value varchar,
        action varchar,
        status varchar,
        attempt integer,
        response_code integer,
        error varchar,
        external_id varchar,
        attempted_at timestamp
    )""",
    f"""create table if not exists {CATALOG}.watermarks (
        source varchar primary key,
        received_at timestamp,
        seq bigint,
        files text
    )""",
    f"""create table if not exists {CATALOG}.source_files (
        source varchar not null,
        name varchar not null,
        primary key (source, name)
    ) without rowid""",
    f"create index if not exists {CATALOG}.outbox_due on outbox (status, next_attempt_at)",
    f"create index if not exists {CATALOG}.outbox_instance on outbox (instance_id)",
    f"create index if not exists {CATALOG}.instances_status on instances (status)",
    f"create index if not exists {CATALOG}.cart_lines_instance on cart_lines (instance_id)",
    f"""create table if not exists {CATALOG}.feed_marks (
        table_name varchar primary key,
        exported_rowid integer not null
    )""",
)

# The state tables the activity feed carries (journeys/feed.py). Their rows are only ever
# appended, so what reached the feed is a prefix: one mark per table, not a flag per row (a
# flag cost an index entry per insert and an update of every row once a second).
FEED_TABLES = ("journal", "deliveries")

# Columns of the journal and deliveries tables that the activity feed carries: the feed's
# contract, so the two cannot drift apart.
JOURNAL_COLUMNS = tuple(activity.JOURNEY_EVENT_SCHEMA.names)
DELIVERY_COLUMNS = tuple(activity.DELIVERY_SCHEMA.names)


def journey_state_path(settings: Settings) -> Path:
    """HEADWATER_JOURNEY_STATE_PATH, else `journey_state.sqlite` next to the warehouse."""
    override = os.environ.get("HEADWATER_JOURNEY_STATE_PATH")
    if override:
        return Path(override).expanduser().resolve()
    return settings.duckdb_path.parent / "journey_state.sqlite"


def open_state(path: Path) -> sqlite3.Connection:
    """The journey state, read-write, tables created; the caller holds the fast-path lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, isolation_level=None, detect_types=sqlite3.PARSE_DECLTYPES,
                          check_same_thread=False, timeout=30.0)
    con.execute("pragma journal_mode=wal")
    # NORMAL in WAL mode: a commit survives a process crash (the SIGKILL case) but not a power
    # loss, where the last commits may roll back together with the watermark. That is safe
    # here because every idempotency key is deterministic (journey, entry key, instance
    # number, step): the replayed events plan the same intents under the same keys and the
    # vendor deduplicates them. It saves an fsync per commit, two per micro-batch; the
    # long-lived worker also moves checkpoints (the remaining fsyncs) to its feed thread.
    con.execute("pragma synchronous=normal")
    for ddl in _DDL:
        con.execute(ddl)
    _adopt_exported_flags(con)
    return con


def feed_marks(con: sqlite3.Connection) -> dict[str, int]:
    """Per feed table, the rowid up to which its rows are durable in the activity feed."""
    marks = dict(con.execute(f"select table_name, exported_rowid from {CATALOG}.feed_marks"))
    return {table: int(marks.get(table, 0)) for table in FEED_TABLES}


def _adopt_exported_flags(con: sqlite3.Connection) -> None:
    """A state file from before feed_marks flagged each row `exported`: its mark is the row
    before the first unexported one (rows were always flagged up to a rowid, so a prefix)."""
    for table in FEED_TABLES:
        columns = {r[1] for r in con.execute(f"pragma {CATALOG}.table_info({table})")}
        known = con.execute(f"select 1 from {CATALOG}.feed_marks where table_name = ?",
                            [table]).fetchone()
        if "exported" not in columns or known:
            continue
        (mark,) = con.execute(
            f"select coalesce((select min(rowid) - 1 from {CATALOG}.{table} where exported = 0),"
            f" (select max(rowid) from {CATALOG}.{table}), 0)").fetchone()
        con.execute(f"insert into {CATALOG}.feed_marks values (?, ?)", [table, mark])
        con.execute(f"drop index if exists {CATALOG}.{table}_unexported")


def open_state_read_only(path: Path) -> sqlite3.Connection:
    """For readers (`headwater journey`): works while the worker writes (WAL)."""
    if not path.exists():
        raise FileNotFoundError(f"No journey state at {path}: the fast path has not run yet.")
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                           detect_types=sqlite3.PARSE_DECLTYPES, check_same_thread=False)
