"""The plan: the diff written to the outbox, a transaction per chunk, then committed as a whole.

Every outbox row (an intent with its idempotency key) is committed before any request is made;
the drain (activations/outbox.py) sends them. Until the plan's last transaction commits, the
pass is `planning` and none of its rows is sent; a run killed before that leaves a partial plan
that the next run deletes (state.discard_partial_plans) and makes again.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from activations.diff import (
    ChangeLog,
    SyncPlan,
    audience_model,
    changes_since_cursor,
    diff_counts,
    diff_parts,
    drop_plan_tables,
    json_object_sql,
    plan_fingerprint,
    quote,
    read_columns,
)
from activations.state import (
    SCHEMA,
    Cursor,
    append_state,
    commit_plan,
    mark_planning,
    note_first_plan,
    row_count,
    write_cursor,
)


@dataclass(frozen=True)
class PlanCounts:
    by_action: dict[str, int]
    revived: int
    superseded: int
    # True when only the change log's candidates were compared.
    incremental: bool = False

    @property
    def planned(self) -> int:
        return sum(n for a, n in self.by_action.items() if a != "leave")



# Outbox rows written per transaction. A transaction's writes stay in memory until it commits
# (DuckDB's local storage and undo buffers), so one transaction for the whole diff held memory
# in proportion to the diff (60-85 MB for the 90k rows of 1% churn at 10M members).
PLAN_CHUNK_ROWS = 10_000
# A plan of more rows (a first sync, a full resync) is written in at most LARGE_PLAN_CHUNKS
# chunks of whole row groups (DuckDB's 122,880 rows): DuckDB writes a transaction's full row
# groups straight to the file, while a smaller commit goes through the WAL and, past 16 MB of
# it, a checkpoint; a first sync of 1M in chunks of 10k (or 56k) took 2.6x as long. Its memory
# is then bounded by the chunk, not by PLAN_CHUNK_ROWS, and a chunk is at most MAX_CHUNK_GROUPS
# row groups: what a drain holds per page (its answers, the page's keys) stays the same beyond
# 1M members instead of growing with the plan (a fixed 4 chunks made a 10M page 2.2M rows).
SMALL_PLAN_ROWS = 200_000
LARGE_PLAN_CHUNKS = 4
ROW_GROUP_ROWS = 122_880
MAX_CHUNK_GROUPS = 2


# An open outbox intent (o) for the same row as a diff row (d): the same member, action and hash.
_SAME_INTENT = (
    "o.profile_id = d.profile_id and o.action = d.action "
    "and o.row_hash is not distinct from d.row_hash"
)


def plan_chunk_rows(total: int, chunk_rows: int) -> int:
    """Rows per transaction for a plan (or a drain's pages) of `total` rows."""
    if total <= SMALL_PLAN_ROWS:
        return chunk_rows
    groups = -(-total // (LARGE_PLAN_CHUNKS * ROW_GROUP_ROWS))
    return max(chunk_rows, min(groups, MAX_CHUNK_GROUPS) * ROW_GROUP_ROWS)


def write_plan(
    con: duckdb.DuckDBPyConnection,
    plan: SyncPlan,
    run_id: str,
    full_resync: bool,
    no_revive_run: str | None,
    log: ChangeLog | None = None,
    chunk_rows: int | None = None,
) -> PlanCounts:
    """Diff and write the outbox: all of it is committed before any send.

    `log`: the change log of the published snapshot the connection's audience reads; the plan
    then compares only what changed since the cursor when it can, and moves the cursor to this
    snapshot when the plan commits. Without one, the cursor is removed (this plan's audience
    is not one the log describes).

    The plan is written in transactions of `chunk_rows` (PLAN_CHUNK_ROWS) outbox rows, then
    committed by one last transaction: the revivals and supersessions of older intents, the
    leavers' state, the cursor, and the pass's status `planned` (state.commit_plan). Until
    that commits the pass is `planning` (state.mark_planning), its rows change nothing else
    and none of them is sent (the drain starts after it); a run killed in between leaves a
    partial plan, which the next run deletes before anything else
    (state.discard_partial_plans): state, cursor and older intents are as they were before the
    plan, so its next plan is the same diff, made again.
    """
    mark_planning(con, plan.sync_name, run_id)
    try:
        return _write_plan(con, plan, run_id, full_resync, no_revive_run, log,
                           chunk_rows or PLAN_CHUNK_ROWS)
    finally:
        drop_plan_tables(con)


def _write_plan(
    con: duckdb.DuckDBPyConnection, plan: SyncPlan, run_id: str, full_resync: bool,
    no_revive_run: str | None, log: ChangeLog | None, chunk_rows: int,
) -> PlanCounts:
    # Outside a transaction: nobody else writes the state (the sync lock, and DuckDB's lock on
    # the state file), and the audience is an immutable published snapshot or the warehouse.
    changes = None if full_resync else changes_since_cursor(con, plan, log)
    whole = changes is None
    # Each part of the diff is written before the next is compared (diff_parts).
    for diff, rows, prior in diff_parts(con, plan, full_resync, changes):
        _write_part(con, plan, run_id, diff, rows, prior, chunk_rows, whole)
    by_action = diff_counts(con)
    con.execute("begin transaction")
    try:
        note_first_plan(con, plan.sync_name, run_id)
        # Rejected intents the diff still wants: retry with their key and attempt count.
        revived = con.execute(
            f"""update {SCHEMA}.outbox o set status = 'pending', updated_at = now()
            from hw_diff d
            where o.sync_name = ? and o.status = 'rejected' and {_SAME_INTENT}
              and o.last_run_id is distinct from ?""",
            [plan.sync_name, no_revive_run],
        ).fetchall()[0]
        # Open intents for an older version of the row (or a member no longer in the diff).
        # Every open intent is a candidate of an incremental plan, so this holds for both.
        # This plan's rows are pending, never touched here.
        superseded = con.execute(
            f"""delete from {SCHEMA}.outbox o
            where o.sync_name = ? and o.status in ('rejected', 'dead')
              and not exists (select 1 from hw_diff d where {_SAME_INTENT})""",
            [plan.sync_name],
        ).fetchall()[0]
        if by_action.get("leave"):
            # Leavers are gone from the state: logged as such (activations/state.py).
            append_state(con, plan.sync_name,
                         "(select profile_id, null::uhugeint as row_hash, null::json as "
                         "identifiers from hw_diff where action = 'leave')", "profile_id")
        cursor = None
        if log is not None and log.manifest.lineage and audience_model(plan) in (
            log.manifest.models
        ):
            cursor = Cursor(log.manifest.lineage, log.manifest.seq, plan_fingerprint(plan))
        write_cursor(con, plan.sync_name, cursor)
        commit_plan(con, plan.sync_name, run_id, sum(by_action.values()))
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return PlanCounts(
        by_action=by_action,
        revived=int(revived[0]) if revived else 0,
        superseded=int(superseded[0]) if superseded else 0,
        incremental=changes is not None,
    )


def _write_part(
    con: duckdb.DuckDBPyConnection, plan: SyncPlan, run_id: str, diff: str, rows: str,
    prior: str, chunk_rows: int, whole: bool,
) -> None:
    """Write the outbox rows of one part of the diff (`diff`, with its members' audience `rows`
    and state `prior`), a transaction per chunk."""
    chunk_rows = plan_chunk_rows(row_count(con, diff), chunk_rows)
    # The rows to write, numbered into chunks; an open intent for the same row is kept (its
    # key and attempts) instead. This plan's own rows cannot match: one row per member.
    con.execute(
        f"""create or replace temp table hw_plan as
        select d.profile_id, d.action, d.row_hash,
               (row_number() over () - 1) // {int(chunk_rows)} as chunk
        from {diff} d
        where d.action <> 'leave' and not exists (
            select 1 from {SCHEMA}.outbox o where o.sync_name = ? and {_SAME_INTENT})""",
        [plan.sync_name],
    )
    (chunks,) = con.execute("select coalesce(max(chunk) + 1, 0) from hw_plan").fetchone() or (0,)
    chunked = chunks > 1 and whole
    if chunked:
        # A whole-audience plan joins the audience once, not once per chunk: its members'
        # rows, in chunk order, so that each chunk reads only its own (zone maps on chunk).
        _plan_inputs(con, plan, rows, prior)
    payload = json_object_sql(plan.payload_columns)
    identifiers = json_object_sql(plan.identifier_columns)
    for chunk in range(int(chunks)):
        rows_k = f"(select * from hw_rows where chunk = {chunk})" if chunked else rows
        prior_k = f"(select * from hw_state where chunk = {chunk})" if chunked else prior
        con.execute("begin transaction")
        try:
            con.execute(
                f"""insert into {SCHEMA}.outbox (sync_name, idempotency_key, run_id, profile_id,
                    action, row_hash, payload, identifiers, status, attempts, created_at,
                    updated_at)
                select ?, md5(concat_ws(':', ?, ?, d.profile_id, d.action)), ?, d.profile_id,
                    d.action, d.row_hash,
                    case when d.action = 'remove' then s.identifiers else {payload} end,
                    case when d.action = 'remove' then s.identifiers else {identifiers} end,
                    'pending', 0, now(), now()
                from (select * from hw_plan where chunk = {chunk}) d
                left join {rows_k} a
                  on d.action <> 'remove' and cast(a.profile_id as varchar) = d.profile_id
                left join {prior_k} s
                  on d.action = 'remove' and s.profile_id = d.profile_id""",
                [plan.sync_name, plan.sync_name, run_id, run_id],
            )
            con.execute("commit")
        except BaseException:
            con.execute("rollback")
            raise


def _plan_inputs(con: duckdb.DuckDBPyConnection, plan: SyncPlan, rows: str, prior: str) -> None:
    """The audience rows and prior state of a whole-audience plan's members only, with their
    chunk, as temp tables hw_rows and hw_state (what an incremental plan's candidates are)."""
    columns = ", ".join(f"a.{quote(c)}" for c in read_columns(plan))
    con.execute(
        f"""create or replace temp table hw_rows as
        select {columns}, p.chunk from {rows} a
        join hw_plan p on p.action <> 'remove' and p.profile_id = cast(a.profile_id as varchar)
        order by p.chunk"""
    )
    con.execute(
        f"""create or replace temp table hw_state as
        select s.profile_id, s.identifiers, p.chunk from {prior} s
        join hw_plan p on p.action = 'remove' and p.profile_id = s.profile_id
        order by p.chunk"""
    )
