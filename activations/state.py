"""Sync state in the warehouse: the `headwater_state` tables and the set-based bookkeeping.

Every statement names its tables `headwater_state.<table>`, so that `headwater_state` can be a
schema of the warehouse or an attached database file without any change here.

Tables
- `sync_state__<sync>`: what the destination held at the last compaction (profile_id, row_hash,
  identifiers), one row per member.
- `sync_state_log__<sync>`: append-only, what was delivered since (a `version` per fold; a
  NULL row_hash is a member removed or left). What the destination holds now is the base
  overlaid with the latest log row per member: `current_state_sql`. Folds only append: a
  delete or update of 1% of the base spread over it marks every vector of the table (DuckDB
  keeps a version array per 2,048 rows touched, in memory until the process ends, so a fold's
  memory grew with N), and a delete by key reads the base's whole key column. `compact_state`
  rewrites the base once the log outgrows COMPACT_FRACTION of it.
- `outbox`: open delivery intents, written before any request: pending, rejected (retry next
  run), dead (needs a replay). Delivered intents leave the outbox when folded.
- `delivery_records`: append-only, one row per record and attempt (the audit trail and the
  source for revenue attribution).
- `sync_runs`: one row per pass of a sync, with its counts; unfinished passes are folded by
  the next run (crash recovery). A sync pass is `planning` until its plan commits
  (activations/plan.py write_plan): a run that finds one deletes that partial plan first.
- `sync_cursors`: per sync, the published audience (lineage and seq) its last committed plan
  compared, and a fingerprint of what that plan hashed; the next plan reads only the change
  log after it (activations/diff.py). No row: the next plan compares the whole audience.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb

SCHEMA = "headwater_state"

# The near-unique text columns (keys, profile ids, JSON payloads) are compressed with ZSTD
# instead of DuckDB's automatic choice: at every checkpoint the automatic choice analyses each
# such column for (dictionary-)FSST, which on a first sync of 1M members was about a fifth of
# the engine's CPU, for a file a third larger than ZSTD's. Low-cardinality columns (names,
# actions, statuses) keep the automatic choice (constant or dictionary).
_ZSTD = "using compression zstd"

DDL: tuple[str, ...] = (
    f"""create table if not exists {SCHEMA}.outbox (
        sync_name varchar not null,
        idempotency_key varchar not null {_ZSTD},
        run_id varchar not null,
        profile_id varchar not null {_ZSTD},
        action varchar not null,
        row_hash uhugeint,
        payload json {_ZSTD},
        identifiers json {_ZSTD},
        status varchar not null,
        attempts integer not null default 0,
        last_run_id varchar,
        last_status_code integer,
        last_error varchar,
        created_at timestamp not null,
        updated_at timestamp not null
    )""",
    f"""create table if not exists {SCHEMA}.delivery_records (
        sync_name varchar not null,
        run_id varchar not null,
        idempotency_key varchar not null {_ZSTD},
        profile_id varchar not null {_ZSTD},
        action varchar not null,
        status varchar not null,
        attempt integer not null,
        response_code integer,
        error varchar,
        external_id varchar,
        attempted_at timestamp not null
    )""",
    f"""create table if not exists {SCHEMA}.sync_runs (
        run_id varchar not null,
        sync_name varchar not null,
        kind varchar not null,
        mode varchar,
        full_resync boolean,
        started_at timestamp not null,
        finished_at timestamp,
        status varchar,
        planned bigint,
        delivered bigint,
        rejected bigint,
        dead bigint,
        pending bigint,
        message varchar
    )""",
    # Plans made while the sync's state was empty (activations/state.py append_state): their
    # adds are of members with no state row, so folding them into the base is exact.
    f"""create table if not exists {SCHEMA}.sync_first_plans (
        sync_name varchar not null,
        run_id varchar not null
    )""",
    f"""create table if not exists {SCHEMA}.sync_cursors (
        sync_name varchar not null,
        lineage varchar not null,
        seq bigint not null,
        plan varchar not null,
        updated_at timestamp not null
    )""",
)


# The log is folded into the base (one rewrite of the state, O(N)) once it holds this share of
# the base's rows: at 1% churn a sync compacts about every tenth run, and reads of the current
# state meanwhile probe a log of at most a tenth of the base.
COMPACT_FRACTION = 0.1


def state_table(sync_name: str) -> str:
    # sync names are validated as plain identifiers (config.py), so this is safe to splice.
    return f"{SCHEMA}.sync_state__{sync_name}"


def state_log_table(sync_name: str) -> str:
    return f"{SCHEMA}.sync_state_log__{sync_name}"


def _state_ddl(table: str) -> str:
    return f"""create table if not exists {table} (
        profile_id varchar not null {_ZSTD},
        row_hash uhugeint not null,
        identifiers json {_ZSTD},
        delivered_at timestamp not null
    )"""


def _log_ddl(table: str) -> str:
    # row_hash NULL: the member is no longer at the destination (removed, or left in append mode).
    return f"""create table if not exists {table} (
        profile_id varchar not null {_ZSTD},
        row_hash uhugeint,
        identifiers json {_ZSTD},
        delivered_at timestamp not null,
        version bigint not null
    )"""


def current_state_sql(sync_name: str, with_log: bool = True) -> str:
    """The sync's state as one row per member at the destination (profile_id, row_hash,
    identifiers, delivered_at): the base where the log has nothing newer, plus the latest log
    row of each member the log names, unless that row says the member is gone."""
    base = state_table(sync_name)
    if not with_log:
        return f"(select profile_id, row_hash, identifiers, delivered_at from {base})"
    log = state_log_table(sync_name)
    return f"""(select profile_id, row_hash, identifiers, delivered_at from {base} b
        where not exists (select 1 from {log} l where l.profile_id = b.profile_id)
        union all
        select profile_id, row_hash, identifiers, delivered_at from (
            select * from {log}
            qualify row_number() over (partition by profile_id order by version desc) = 1
        ) where row_hash is not null)"""


def append_state(
    con: duckdb.DuckDBPyConnection, sync_name: str, source: str, order: str,
    first_plan_rows: str | None = None,
) -> None:
    """Record `source`'s rows (profile_id, row_hash NULL for gone, identifiers) as delivered,
    one per member (the first by `order`); call inside a transaction.

    They go to the log under one new version, except the adds of a first plan while the log is
    still empty (`first_plan_rows`, a condition on `source`'s rows; see `note_first_plan`):
    those members have no state row, so they go to the base. A first sync would otherwise log
    nearly the whole audience, chunk by chunk, and then rewrite it all in a compaction.
    """
    base, log = state_table(sync_name), state_log_table(sync_name)
    one = f"qualify row_number() over (partition by profile_id order by {order}) = 1"
    empty_log = con.execute(f"select not exists (select 1 from {log})").fetchone()
    rest = source
    if first_plan_rows is not None and empty_log and empty_log[0]:
        # A member with any other row in this fold (an older plan's intent) goes to the log
        # whole, where `order` decides between its rows as before.
        to_base = (f"{first_plan_rows} and profile_id not in "
                   f"(select profile_id from {source} where not ({first_plan_rows}))")
        con.execute(
            f"""insert into {base} (profile_id, row_hash, identifiers, delivered_at)
            select profile_id, row_hash, identifiers, now() from (
                select * from {source} where {to_base} {one})
            where row_hash is not null"""
        )
        rest = f"(select * from {source} where not ({to_base}))"
    row = con.execute(f"select coalesce(max(version), 0) + 1 from {log}").fetchone()
    con.execute(
        f"""insert into {log} (profile_id, row_hash, identifiers, delivered_at, version)
        select profile_id, row_hash, identifiers, now(), ? from {rest} {one}""",
        [int(row[0]) if row else 1],
    )


def note_first_plan(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str) -> None:
    """Inside the plan's transaction: when the sync holds no state yet, remember that this
    run's plan was made against none (its adds may fold into the base: `append_state`)."""
    base, log = state_table(sync_name), state_log_table(sync_name)
    row = con.execute(
        f"select not exists (select 1 from {base}) and not exists (select 1 from {log})"
    ).fetchone()
    con.execute(f"delete from {SCHEMA}.sync_first_plans where sync_name = ?", [sync_name])
    if row and row[0]:
        con.execute(f"insert into {SCHEMA}.sync_first_plans values (?, ?)", [sync_name, run_id])


def _attached_catalog(con: duckdb.DuckDBPyConnection) -> bool:
    row = con.execute(
        "select count(*) from duckdb_databases() where database_name = ?", [SCHEMA]
    ).fetchall()[0]
    return bool(row and row[0])


def ensure_state(con: duckdb.DuckDBPyConnection, sync_name: str | None = None) -> None:
    """Create the state tables if missing (idempotent)."""
    if not _attached_catalog(con):
        con.execute(f"create schema if not exists {SCHEMA}")
    for statement in DDL:
        con.execute(statement)
    if sync_name is not None and not state_exists(con, sync_name):
        # A cursor vouches for the state it was written with: a new (or dropped and recreated)
        # state table must be compared in full once.
        clear_cursor(con, sync_name)
        con.execute(_state_ddl(state_table(sync_name)))
        con.execute(f"drop table if exists {state_log_table(sync_name)}")
    if sync_name is not None:
        # State files written before the log existed get an empty one.
        con.execute(_log_ddl(state_log_table(sync_name)))


def state_exists(con: duckdb.DuckDBPyConnection, sync_name: str) -> bool:
    return _table_exists(con, state_table(sync_name))


def state_log_exists(con: duckdb.DuckDBPyConnection, sync_name: str) -> bool:
    return _table_exists(con, state_log_table(sync_name))


def state_rows(con: duckdb.DuckDBPyConnection, sync_name: str) -> int:
    """At least as many rows as the sync's current state has (its base and its log), 0 before
    its first plan: what sizes the work of a whole-audience compare."""
    if not state_exists(con, sync_name):
        return 0
    log = state_log_table(sync_name)
    return row_count(con, state_table(sync_name)) + (
        row_count(con, log) if state_log_exists(con, sync_name) else 0)


def _table_exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    try:
        con.execute(f"select 1 from {table} limit 0")
        return True
    except duckdb.CatalogException:
        return False


def row_count(con: duckdb.DuckDBPyConnection, relation: str) -> int:
    """Rows of a table, or of a relation in SQL (a parenthesised query, a file scan)."""
    row = con.execute(f"select count(*) from {relation}").fetchone()
    return int(row[0]) if row else 0


def compact_state(con: duckdb.DuckDBPyConnection, sync_name: str, force: bool = False) -> bool:
    """Rewrite the base as the current state and empty the log, when the log has grown to
    COMPACT_FRACTION of the base (or `force`); True when it did. One transaction: a crash
    leaves the old base and log, which read the same."""
    base, log = state_table(sync_name), state_log_table(sync_name)
    logged = row_count(con, log)
    if not logged or (not force and logged < COMPACT_FRACTION * row_count(con, base)):
        return False
    staged = f"{base}__compacted"
    con.execute("begin transaction")
    try:
        con.execute(f"drop table if exists {staged}")
        con.execute(_state_ddl(staged))
        con.execute(f"insert into {staged} select * from {current_state_sql(sync_name)}")
        con.execute(f"drop table {base}")
        con.execute(f"alter table {staged} rename to {base.split('.')[-1]}")
        con.execute(f"drop table {log}")
        con.execute(_log_ddl(log))
        # The base now holds rows of other plans: a first plan's adds no longer fold into it.
        con.execute(f"delete from {SCHEMA}.sync_first_plans where sync_name = ?", [sync_name])
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return True


@dataclass(frozen=True)
class Cursor:
    """The published audience a sync's last committed plan compared (activations/diff.py)."""

    lineage: str
    seq: int
    plan: str


def read_cursor(con: duckdb.DuckDBPyConnection, sync_name: str) -> Cursor | None:
    try:
        row = con.execute(
            f"select lineage, seq, plan from {SCHEMA}.sync_cursors where sync_name = ?",
            [sync_name],
        ).fetchone()
    except duckdb.CatalogException:
        return None  # nothing was ever planned here (a dry run may read before any run)
    return Cursor(str(row[0]), int(row[1]), str(row[2])) if row else None


def write_cursor(con: duckdb.DuckDBPyConnection, sync_name: str, cursor: Cursor | None) -> None:
    """Replace the sync's cursor (None: remove it); call inside the plan's transaction."""
    clear_cursor(con, sync_name)
    if cursor is not None:
        con.execute(
            f"insert into {SCHEMA}.sync_cursors (sync_name, lineage, seq, plan, updated_at)"
            " values (?, ?, ?, ?, now())",
            [sync_name, cursor.lineage, cursor.seq, cursor.plan],
        )


def clear_cursor(con: duckdb.DuckDBPyConnection, sync_name: str) -> None:
    con.execute(f"delete from {SCHEMA}.sync_cursors where sync_name = ?", [sync_name])


def start_pass(
    con: duckdb.DuckDBPyConnection, run_id: str, sync_name: str, kind: str, mode: str,
    full_resync: bool,
) -> None:
    con.execute(
        f"insert into {SCHEMA}.sync_runs (run_id, sync_name, kind, mode, full_resync, started_at)"
        " values (?, ?, ?, ?, ?, now())",
        [run_id, sync_name, kind, mode, full_resync],
    )


# sync_runs.status of a sync pass whose plan is being written (activations/plan.py write_plan):
# its outbox rows are a partial plan until commit_plan sets PLANNED in the plan's last
# transaction. A pass is only ever `planning` in a run that died while writing its plan.
PLANNING = "planning"
PLANNED = "planned"


def mark_planning(con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str) -> None:
    con.execute(
        f"update {SCHEMA}.sync_runs set status = ? where sync_name = ? and run_id = ?",
        [PLANNING, sync_name, run_id],
    )


def commit_plan(
    con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, planned: int
) -> None:
    """Inside the plan's last transaction: its outbox rows are now the pass's plan."""
    con.execute(
        f"update {SCHEMA}.sync_runs set status = ?, planned = ? "
        "where sync_name = ? and run_id = ?",
        [PLANNED, planned, sync_name, run_id],
    )


def discard_partial_plans(con: duckdb.DuckDBPyConnection, sync_name: str) -> int:
    """Delete the outbox rows of plans a killed run left half-written; return how many.

    Nothing of such a plan was sent (a pass drains only after its plan committed) and nothing
    else was changed by it (revivals, supersessions, leavers and the cursor commit with the
    plan), so the next plan makes the same diff again from the same state. Its pass is then
    folded like any crashed pass (it has no answers). One transaction: a run killed during it
    leaves the pass `planning`, and the next run deletes again.
    """
    con.execute("begin transaction")
    try:
        row = con.execute(
            f"""delete from {SCHEMA}.outbox
            where sync_name = ? and run_id in (
                select run_id from {SCHEMA}.sync_runs where sync_name = ? and status = ?)""",
            [sync_name, sync_name, PLANNING],
        ).fetchone()
        con.execute(
            f"update {SCHEMA}.sync_runs set status = null, message = 'partial plan discarded' "
            "where sync_name = ? and status = ?",
            [sync_name, PLANNING],
        )
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return int(row[0]) if row else 0


def unfinished_passes(con: duckdb.DuckDBPyConnection, sync_name: str) -> list[str]:
    rows = con.execute(
        f"select run_id from {SCHEMA}.sync_runs where sync_name = ? and finished_at is null"
        " order by started_at",
        [sync_name],
    ).fetchall()
    return [r[0] for r in rows]


@dataclass(frozen=True)
class FoldCounts:
    delivered: int
    rejected: int
    dead: int
    pending: int

    def __add__(self, other: FoldCounts) -> FoldCounts:
        return FoldCounts(self.delivered + other.delivered, self.rejected + other.rejected,
                          self.dead + other.dead, self.pending + other.pending)


def fold(
    con: duckdb.DuckDBPyConnection,
    sync_name: str,
    run_ids: list[str],
    max_attempts: int,
    status: str,
    message: str | None = None,
) -> FoldCounts:
    """Apply the acknowledgements of crashed passes not applied yet and close the passes, in one
    transaction.

    A drain applies its answers as it records them (fold_acks, in the same transaction), so
    this only has answers to apply for passes recorded by a version that folded at the end of
    a pass; the rest are skipped (see _apply_acks), and folding a pass twice is harmless.
    """
    if not run_ids:
        return FoldCounts(0, 0, 0, 0)
    con.execute("begin transaction")
    try:
        result = _apply_acks(
            con, sync_name,
            f"""(select * from {SCHEMA}.delivery_records
                 where sync_name = ? and list_contains(?, run_id))""",
            [sync_name, run_ids], max_attempts,
        )
        _close(con, sync_name, run_ids, status, message, result)
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return result


def fold_acks(
    con: duckdb.DuckDBPyConnection, sync_name: str, acks: str, max_attempts: int,
    rowids: tuple[int, int] | None = None,
) -> FoldCounts:
    """Apply answers just recorded (`acks`: a relation of delivery_records rows, one per
    intent) to the outbox and the state; call inside the transaction that records them, so an
    answer is never recorded without being applied, nor applied twice.

    `rowids`: the outbox rowids (lowest, highest) the answered intents were read at, by the
    drain's page. The fold then reads only those row groups of the outbox instead of the
    whole table: a first sync of N rows in pages of P read N/P times the outbox, N^2/P rows,
    and DuckDB cached what it read (peak memory grew with N). A rowid is only a hint: a
    checkpoint may move rows (row groups with deletes are merged), so unless every answered
    intent is found in the range the fold reads the whole outbox, as without one.
    """
    return _apply_acks(con, sync_name, acks, [], max_attempts, rowids)


def close_pass(
    con: duckdb.DuckDBPyConnection, sync_name: str, run_id: str, status: str,
    message: str | None, counts: FoldCounts,
) -> None:
    """Mark a drained pass finished with its counts (its answers are already applied)."""
    _close(con, sync_name, [run_id], status, message, counts)


def _close(
    con: duckdb.DuckDBPyConnection, sync_name: str, run_ids: list[str], status: str,
    message: str | None, counts: FoldCounts,
) -> None:
    con.execute(
        f"""update {SCHEMA}.sync_runs set finished_at = now(), status = ?, message = ?,
            delivered = ?, rejected = ?, dead = ?, pending = ?
        where sync_name = ? and list_contains(?, run_id)""",
        [status, message, counts.delivered, counts.rejected, counts.dead, counts.pending,
         sync_name, run_ids],
    )


def _apply_acks(
    con: duckdb.DuckDBPyConnection, sync_name: str, source: str, params: list[Any],
    max_attempts: int, rowids: tuple[int, int] | None = None,
) -> FoldCounts:
    """Delivered intents move into the sync state (appended to its log) and leave the outbox;
    rejections raise the attempt count and dead-letter the intent at `max_attempts`; anything
    unanswered stays pending and is re-sent, with its key, by the next pass. Inside a
    transaction.

    An intent whose last_run_id is already the answers' run had them applied (only this sets
    it, and a pass sends an intent once): it is left as it is, so that a crashed pass's answers,
    applied as they were recorded, are not counted again by the next run's fold.
    """
    con.execute(
        f"""create or replace temp table hw_acks as
        select idempotency_key,
               count(*) filter (where status = 'rejected') as rejections,
               bool_or(status = 'delivered') as delivered,
               arg_max(response_code, attempted_at) as last_code,
               arg_max(error, attempted_at) as last_error,
               arg_max(run_id, attempted_at) as last_run_id
        from {source} r
        group by idempotency_key""",
        params,
    )
    (delivered, other) = con.execute(
        "select count(*) filter (where delivered), count(*) filter (where not delivered) "
        "from hw_acks"
    ).fetchone() or (0, 0)
    # Each statement below reads the outbox: skipped when it has nothing to do (a first
    # sync's answers are all deliveries), since the drain applies its answers page by page;
    # and only the rows in `rowids` when all the answered intents are there (fold_acks).
    within = ""
    if rowids is not None and (delivered or other):
        lo, hi = int(rowids[0]), int(rowids[1])
        in_range = f"o.rowid between {lo} and {hi}"
        found = con.execute(
            f"select count(*) from {SCHEMA}.outbox o join hw_acks a using (idempotency_key) "
            f"where o.sync_name = ? and {in_range}",
            [sync_name],
        ).fetchone()
        if found and found[0] == delivered + other:
            within = f" and {in_range}"
    if delivered:
        delivered = _apply_delivered(con, sync_name, within)
    counts: tuple[Any, ...] = (0, 0, 0)
    if other:
        counts = _apply_other(con, sync_name, max_attempts, within)
    con.execute("drop table hw_acks")
    return FoldCounts(int(delivered), int(counts[0]), int(counts[1]), int(counts[2]))


def _apply_delivered(con: duckdb.DuckDBPyConnection, sync_name: str, within: str = "") -> int:
    """Delivered intents still open (once applied they are gone); how many. `within`: a
    further condition on the outbox rows `o` (the rowids they are at: _apply_acks)."""
    con.execute(
        f"""create or replace temp table hw_done as
        select o.profile_id, o.action, o.row_hash, o.identifiers, o.idempotency_key,
               o.created_at, o.run_id in (
                   select run_id from {SCHEMA}.sync_first_plans where sync_name = ?
               ) and o.action = 'add' as first_plan_add
        from {SCHEMA}.outbox o join hw_acks a using (idempotency_key)
        where o.sync_name = ? and a.delivered{within}""",
        [sync_name, sync_name],
    )
    # Two delivered intents of one member (one resumed, one planned later): the later
    # plan's row is what the destination holds.
    append_state(
        con, sync_name,
        "(select profile_id, case when action <> 'remove' then row_hash end as row_hash, "
        "case when action <> 'remove' then identifiers end as identifiers, created_at, "
        "idempotency_key, first_plan_add from hw_done)",
        "created_at desc, idempotency_key desc",
        first_plan_rows="first_plan_add",
    )
    done = con.execute(
        f"""delete from {SCHEMA}.outbox o using hw_done d
        where o.sync_name = ? and o.idempotency_key = d.idempotency_key{within}""",
        [sync_name],
    ).fetchone()
    con.execute("drop table hw_done")
    return int(done[0]) if done else 0


def _apply_other(
    con: duckdb.DuckDBPyConnection, sync_name: str, max_attempts: int, within: str = ""
) -> tuple[Any, ...]:
    """Rejections and unanswered intents; (rejected, dead, pending) among them after."""
    con.execute(
        f"""update {SCHEMA}.outbox o set
            attempts = o.attempts + a.rejections,
            last_status_code = a.last_code,
            last_error = a.last_error,
            last_run_id = a.last_run_id,
            updated_at = now(),
            status = case when a.rejections = 0 then o.status
                          when o.attempts + a.rejections >= ? then 'dead'
                          else 'rejected' end
        from hw_acks a
        where o.sync_name = ? and o.idempotency_key = a.idempotency_key and not a.delivered
          and o.last_run_id is distinct from a.last_run_id{within}""",
        [max_attempts, sync_name],
    )
    row = con.execute(
        f"""select
            count(*) filter (where o.status = 'rejected'),
            count(*) filter (where o.status = 'dead'),
            count(*) filter (where o.status = 'pending')
        from {SCHEMA}.outbox o join hw_acks a using (idempotency_key)
        where o.sync_name = ? and not a.delivered{within}""",
        [sync_name],
    ).fetchone()
    return tuple(row) if row else (0, 0, 0)


@dataclass(frozen=True)
class DeadLetter:
    sync_name: str
    idempotency_key: str
    profile_id: str
    action: str
    attempts: int
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime


def list_dead_letters(
    con: duckdb.DuckDBPyConnection, sync_name: str | None = None, limit: int | None = None
) -> list[DeadLetter]:
    """Intents that were rejected max_attempts times, newest first."""
    ensure_state(con)
    sql = (
        f"select sync_name, idempotency_key, profile_id, action, attempts, last_status_code,"
        f" last_error, created_at, updated_at from {SCHEMA}.outbox where status = 'dead'"
    )
    params: list[Any] = []
    if sync_name is not None:
        sql += " and sync_name = ?"
        params.append(sync_name)
    sql += " order by updated_at desc, idempotency_key"
    if limit is not None:
        sql += f" limit {int(limit)}"
    return [DeadLetter(*row) for row in con.execute(sql, params).fetchall()]


def replay_dead_letters(
    con: duckdb.DuckDBPyConnection, sync_name: str, keys: list[str] | None = None
) -> int:
    """Make dead letters pending again (attempts reset); the next run sends them, same key."""
    ensure_state(con)
    sql = (
        f"update {SCHEMA}.outbox set status = 'pending', attempts = 0, updated_at = now()"
        " where sync_name = ? and status = 'dead'"
    )
    params: list[Any] = [sync_name]
    if keys:
        sql += " and list_contains(?, idempotency_key)"
        params.append(keys)
    row = con.execute(sql, params).fetchall()[0]
    return int(row[0]) if row else 0


def outbox_counts(con: duckdb.DuckDBPyConnection, sync_name: str) -> dict[str, int]:
    rows = con.execute(
        f"select status, count(*) from {SCHEMA}.outbox where sync_name = ? group by status",
        [sync_name],
    ).fetchall()
    return {str(s): int(n) for s, n in rows}
