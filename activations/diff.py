"""The diff, in the warehouse: the audience now against what the destination last accepted.

One full outer join between the consent-gated audience (profile_id, row hash) and the sync's
state table gives adds, changes (by row hash) and removes. Only the diff is materialized, as
outbox rows, in the same transaction that records which open intents it supersedes or revives;
nothing of the audience leaves the warehouse here.

Incremental plans. A join of the whole audience with the whole state costs several scans of
the audience and memory that grows with it (a hash table of every member). When the audience
is a published snapshot with a change log (headwater/snapshots.py), a plan compares only the
candidates: the profiles in the change files after the sync's cursor, plus every profile with
an open intent in the outbox. That is the whole diff, by induction: the plan that wrote the
cursor left every other profile either equal to its state or with an open intent, and neither
its audience row (no change file names it) nor its state (only a delivered intent changes the
state, and it has none) moved since. The state is then only probed for the candidates. The
whole audience is compared instead on --full-resync, without a cursor (first plan, a new state
table, a plan made without the log), when the cursor's published folder (lineage) or the plan's
fingerprint (audience, mode, consent, hashed columns, this module's hashing) differ, or when
the log no longer reaches back to the cursor (pruned files).

What the destination holds for a candidate is, by the same induction, what the plan at the
cursor wanted for it unless it has an open intent: in mirror and append mode that is a function
of its audience row at the cursor, which every change row carries (its previous row, `_hw_old`).
Those plans derive the state of their changed candidates from the log and read the state table
only for the profiles with open intents: 1% churn spread over the audience would touch every
block of the state's columns, and DuckDB keeps what it read cached up to its memory_limit
(peak memory in proportion to N, benchmarks/bench_sync.py). Upsert mode keeps members who left
in the state, so its state is not a function of the audience: it probes the state table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from activations.config import Mode, SyncConfigError
from activations.consent import consent_column, consent_predicate
from activations.destinations.base import Channel
from activations.memory import lowered_limit, release_cache, setting
from activations.state import (
    SCHEMA,
    Cursor,
    append_state,
    commit_plan,
    current_state_sql,
    mark_planning,
    note_first_plan,
    read_cursor,
    state_exists,
    state_log_exists,
    state_rows,
    write_cursor,
)
from headwater.snapshots import CHANGE, OLD, SEQ, Manifest, change_relation

# Part of every cursor's fingerprint: raise it when row_hash_sql or the consent or identifier
# gates change meaning, so that every sync compares its whole audience once under the new rule.
HASH_VERSION = 1


@dataclass(frozen=True)
class SyncPlan:
    """The SQL pieces of one sync, resolved against its audience's columns."""

    sync_name: str
    audience: str
    mode: Mode
    channel: Channel
    identifier_columns: tuple[str, ...]
    # Every column the records need: identifiers, mapped fields and template variables.
    payload_columns: tuple[str, ...]


@dataclass(frozen=True)
class ChangeLog:
    """The published snapshots the connection's audience views read (the same manifest)."""

    manifest: Manifest
    folder: Path


@dataclass(frozen=True)
class Changes:
    """What an incremental plan reads: the audience's change rows after the cursor."""

    # SQL over the change files (model columns, _hw_change, _hw_seq); None: nothing changed.
    relation: str | None
    # Every change file carries each member's previous row (headwater.snapshots.OLD).
    old_rows: bool = False


def _q(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def audience_columns(con: duckdb.DuckDBPyConnection, audience: str) -> list[str]:
    try:
        rows = con.execute(f"describe {audience}").fetchall()
    except duckdb.CatalogException:
        raise SyncConfigError(
            f"Audience {audience!r} does not exist in the warehouse. Build it first "
            f"(`headwater build --select {audience.split('.')[-1]}`) or fix `audience:`."
        ) from None
    return [str(r[0]) for r in rows]


def check_columns(
    plan: SyncPlan, available: Sequence[str], where: dict[str, str]
) -> None:
    """Every column the sync reads must exist; say which field wanted which column."""
    have = set(available)
    needed = {"profile_id": "the audience contract (one row per profile_id)"}
    needed.update(where)
    column = consent_column(plan.channel)
    if column:
        needed[column] = f"the consent gate for channel {plan.channel.value}"
    missing = [f"{c} (for {why})" for c, why in needed.items() if c not in have]
    if missing:
        raise SyncConfigError(
            f"sync {plan.sync_name}: audience {plan.audience} lacks column(s): "
            f"{', '.join(missing)}. Its columns are: {', '.join(available)}."
        )


def row_hash_sql(columns: Sequence[str], alias: str = "a") -> str:
    """md5 of profile_id and the payload columns; a separator and a NULL marker keep it exact."""
    parts = [f"coalesce(cast({alias}.{_q(c)} as varchar), chr(30))" for c in columns]
    key = f"cast({alias}.profile_id as varchar)"
    return f"md5_number(concat_ws(chr(31), {key}, {', '.join(parts)}))"


def _json_object(columns: Sequence[str], alias: str = "a") -> str:
    args = ", ".join(f"'{c}', {alias}.{_q(c)}" for c in columns)
    return f"json_object({args})"


def plan_fingerprint(plan: SyncPlan) -> str:
    """What a cursor vouches for: the same audience, hashed and gated the same way."""
    parts = [HASH_VERSION, plan.audience, plan.mode.value, consent_predicate(plan.channel),
             list(plan.identifier_columns), list(plan.payload_columns)]
    return hashlib.md5(json.dumps(parts).encode()).hexdigest()


def _audience_model(plan: SyncPlan) -> str:
    return plan.audience.split(".")[-1]


def changes_since_cursor(
    con: duckdb.DuckDBPyConnection, plan: SyncPlan, log: ChangeLog | None
) -> Changes | None:
    """The change rows after the sync's cursor, or None when the whole audience must be
    compared (see the module docstring for when)."""
    if log is None or not log.manifest.lineage:
        return None
    cursor = read_cursor(con, plan.sync_name)
    if (
        cursor is None
        or cursor.lineage != log.manifest.lineage
        or cursor.plan != plan_fingerprint(plan)
        or cursor.seq > log.manifest.seq
    ):
        return None
    files = log.manifest.changes_after(_audience_model(plan), cursor.seq)
    if files is None:
        return None
    if not files:
        return Changes(None)
    return Changes(change_relation(files, log.folder), all(f.old_rows for f in files))


def ids_present_sql(plan: SyncPlan, alias: str = "a") -> str:
    """True where the row carries every identifier the sync sends (the identifier gate)."""
    return " and ".join(f"{alias}.{_q(c)} is not null" for c in plan.identifier_columns) or "true"


def _desired_sql(plan: SyncPlan, rows: str) -> str:
    return (
        f"select cast(a.profile_id as varchar) as profile_id, "
        f"{row_hash_sql(plan.payload_columns)} as row_hash "
        f"from {rows} a where {consent_predicate(plan.channel)} and {ids_present_sql(plan)}"
    )


def _read_columns(plan: SyncPlan) -> list[str]:
    """The audience columns a plan reads: the key, what it hashes and maps, the consent gate."""
    column = consent_column(plan.channel)
    return list(dict.fromkeys(["profile_id", *plan.payload_columns, *([column] if column else [])]))


def state_sql(con: duckdb.DuckDBPyConnection, sync_name: str) -> str:
    """The sync's current state (activations/state.py: its base overlaid with its log), or an
    empty relation of its shape before the first plan."""
    if state_exists(con, sync_name):
        # A read-only reader of a state file written before the log existed has no log.
        return current_state_sql(sync_name, with_log=state_log_exists(con, sync_name))
    return (
        "(select null::varchar as profile_id, null::uhugeint as row_hash, "
        "null::json as identifiers where false)"
    )


PART_SALT = "headwater.part"


def _in_part(column: str, k: int, parts: int) -> str:
    """True for the profiles of part k of `parts`: the same profile lands in the same part on
    every side of a diff (one hash of its key)."""
    if parts == 1:
        return "true"
    # Salted: audiences and tests sample members by hash(profile_id) % n themselves, and 1%
    # churn picked that way put half of the changed profiles in one part of the plain hash.
    return f"hash(cast({column} as varchar), '{PART_SALT}') % {int(parts)} = {int(k)}"


def _candidates(
    con: duckdb.DuckDBPyConnection, plan: SyncPlan, changes: Changes, part: str = "true"
) -> tuple[str, str]:
    """Materialize the incremental plan's candidates (those of one part: `part`, a predicate
    on profile_id); return (audience rows, state rows).

    hw_keys: every profile the plan compares. hw_rows: their current audience rows, from the
    latest change row of each profile (an upsert carries the whole new row) and, for profiles
    with an open intent but no change, from the audience itself. hw_state: their sync state
    (profile_id, row_hash, identifiers), derived from the log where it can be (module
    docstring) and read from the state table for the rest.
    """
    open_keys = f"select profile_id from {SCHEMA}.outbox where sync_name = ? and {part}"
    derive = changes.relation is not None and changes.old_rows and plan.mode != Mode.UPSERT
    # Only the columns the plan reads are kept (the rows of 1% churn are many at 10M).
    columns = ", ".join(_q(c) for c in _read_columns(plan))
    branches: list[str] = []
    if changes.relation is not None:
        fields = ", ".join(f"{_q(c)} := {OLD}.{_q(c)}" for c in _read_columns(plan))
        previous = (f", case when {OLD} is not null then struct_pack({fields}) end as {OLD}"
                    if derive else "")
        con.execute(
            f"""create or replace temp table hw_changes as
            select {columns}, {CHANGE}{previous},
                   {SEQ} = max({SEQ}) over w as _hw_latest,
                   {SEQ} = min({SEQ}) over w as _hw_earliest
            from {changes.relation} where {part}
            window w as (partition by profile_id)"""
        )
        branches.append("select distinct cast(profile_id as varchar) as profile_id "
                        "from hw_changes")
    branches.append(open_keys)
    con.execute(
        "create or replace temp table hw_keys as " + " union ".join(branches),
        [plan.sync_name],
    )
    rows: list[str] = []
    if changes.relation is not None:
        rows.append(f"select {columns} from hw_changes "
                    f"where _hw_latest and {CHANGE} = 'upsert'")
    unchanged = (
        "select profile_id from hw_keys"
        + (" except select cast(profile_id as varchar) from hw_changes"
           if changes.relation is not None else "")
    )
    (open_unchanged,) = con.execute(f"select count(*) from ({unchanged})").fetchone() or (0,)
    if open_unchanged:
        # Only with open intents: this branch reads the audience (a scan of it).
        rows.append(f"select {columns} from {plan.audience} a "
                    f"where cast(a.profile_id as varchar) in ({unchanged})")
    if rows:
        con.execute("create or replace temp table hw_rows as " + " union all by name ".join(rows))
    else:
        con.execute(f"create or replace temp table hw_rows as select {columns} "
                    f"from {plan.audience} limit 0")
    state_rows = state_sql(con, plan.sync_name)
    # Only the columns needed (identifiers: by removes, mirror mode only): spread churn touches
    # every block of a column it reads, and DuckDB keeps what it read in its buffer pool.
    identifiers = "identifiers" if plan.mode == Mode.MIRROR else "null::json as identifiers"

    def probed(keys: str) -> str:
        return (f"select profile_id, row_hash, {identifiers} from {state_rows} "
                f"where profile_id in ({keys})")

    params: list[str] = []
    if derive:
        # What the plan at the cursor wanted: the desired row of its audience row then.
        previous = (f"(select unnest({OLD}) from hw_changes "
                    f"where _hw_earliest and {OLD} is not null)")
        state = (
            f"select cast(o.profile_id as varchar) as profile_id, "
            f"{row_hash_sql(plan.payload_columns, 'o')} as row_hash, "
            f"{_json_object(plan.identifier_columns, 'o')} as identifiers "
            f"from {previous} o where {consent_predicate(plan.channel, 'o')} "
            f"and {ids_present_sql(plan, 'o')} and cast(o.profile_id as varchar) not in "
            f"({open_keys})"
        )
        params.append(plan.sync_name)
        (opened,) = con.execute(
            f"select count(*) from {SCHEMA}.outbox where sync_name = ? and {part}",
            [plan.sync_name]
        ).fetchone() or (0,)
        if opened:
            state += " union all " + probed(open_keys)
            params.append(plan.sync_name)
    else:
        state = probed("select profile_id from hw_keys")
    con.execute("create or replace temp table hw_state as " + state, params)
    con.execute("drop table if exists hw_changes")
    return "hw_rows", "hw_state"


def diff_sql(
    plan: SyncPlan, full_resync: bool, rows: str, state: str
) -> str:
    """(profile_id, action, row_hash) for everything that must change at the destination.

    `rows`: the audience (or the incremental plan's candidate rows); `state`: the sync state
    (or its candidates). `leave` rows (append mode only) are members who left: dropped from the
    state without a request, so that coming back sends the message again.
    """
    changed = "true" if full_resync else "d.row_hash is distinct from s.row_hash"
    # A member only on one side has a NULL hash on the other, so "distinct" covers adds and
    # removes too; upsert mode ignores members who left.
    if plan.mode == Mode.APPEND:
        action = "case when d.profile_id is null then 'leave' else 'send' end"
        keep = changed
    elif plan.mode == Mode.MIRROR:
        action = (
            "case when d.profile_id is null then 'remove' "
            "when s.profile_id is null then 'add' else 'update' end"
        )
        keep = changed
    else:
        action = "case when s.profile_id is null then 'add' else 'update' end"
        keep = f"d.profile_id is not null and {changed}"
    return (
        f"with d as ({_desired_sql(plan, rows)}) "
        f"select coalesce(d.profile_id, s.profile_id) as profile_id, {action} as action, "
        f"coalesce(d.row_hash, s.row_hash) as row_hash "
        f"from d full outer join {state} s on s.profile_id = d.profile_id where {keep}"
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


def compute_diff(
    con: duckdb.DuckDBPyConnection, plan: SyncPlan, full_resync: bool,
    changes: Changes | None = None,
) -> dict[str, int]:
    """Materialize the diff as temp table hw_diff; return counts per action.

    With `changes` (and not a full resync) only the candidates are compared; the audience rows
    and state of the last part's candidates are left in temp tables hw_rows and hw_state
    (`rows_relation`; `drop_plan_tables` drops them).
    """
    for _ in diff_parts(con, plan, full_resync, changes):
        pass
    return diff_counts(con)


def diff_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Rows of hw_diff per action."""
    counts = con.execute("select action, count(*) from hw_diff group by action").fetchall()
    return {str(a): int(n) for a, n in counts}


# Candidates of an incremental plan compared at a time: the change rows after the cursor plus
# the open intents. They are held in temp tables while they are compared and written (their
# audience rows with the previous row of each, their state), so that a plan holding all of them
# held memory in proportion to the churn: 40 MB more for the 100k change rows of 1% churn at
# 10M members than for the 10k at 1M. In parts of this size it holds the same at any size.
CANDIDATE_PART_ROWS = 10_000

# The whole-audience compare's memory budget. Its join holds the state (the smaller side) in a
# hash table, and DuckDB caches every block it reads up to its memory limit: under the sync's
# budget its peak followed the audience (244 MB of RSS at 1M members, 412 MB at 10M). Under
# this one it spills instead, and took no longer at 10M. The budget bounds the join's working
# set only if the join is small enough to spill at all: DuckDB's external hash join needs
# memory that grows with its build side (at 64MB, 4.5M state rows ran out of memory and 3.3M
# did not; at 96MB 9M did), so past COMPARE_PART_ROWS state rows the compare runs in hash
# parts of the profiles, each a join of its own and a scan of both sides.
COMPARE_MEMORY_LIMIT = "96MB"
COMPARE_PART_ROWS = 4_000_000


def diff_parts(
    con: duckdb.DuckDBPyConnection, plan: SyncPlan, full_resync: bool, changes: Changes | None,
) -> Iterator[tuple[str, str, str]]:
    """Compute the diff one part of the profiles at a time, appending each part to temp table
    hw_diff; after each, yield (the part's diff, its members' audience rows, their state) as
    relations, for the caller to write before the next part replaces them.

    An incremental plan (`changes`, not a full resync) compares its candidates in parts of
    CANDIDATE_PART_ROWS, a whole-audience plan the whole state in parts of COMPARE_PART_ROWS
    (under COMPARE_MEMORY_LIMIT). One part (the usual case below those sizes) is hw_diff itself.
    """
    incremental = changes is not None and not full_resync
    if changes is not None and incremental:
        candidates = _rows_of(con, changes.relation) + _rows_of(
            con, f"{SCHEMA}.outbox where sync_name = ?", [plan.sync_name])
        parts = max(1, -(-candidates // CANDIDATE_PART_ROWS))
    else:
        state = state_sql(con, plan.sync_name)
        parts = max(1, -(-state_rows(con, plan.sync_name) // COMPARE_PART_ROWS))
    limit = setting(con, "memory_limit")
    for k in range(parts):
        if parts > 1:
            # What the last part's queries left behind: DuckDB's cached blocks and the memory
            # its allocator keeps after a query (memory.release_cache). At 10M members the ten
            # parts of 1% churn otherwise added up to 40 MB more than the one part at 1M.
            release_cache(con, limit)
        target = "hw_diff" if parts == 1 else "hw_part"
        if changes is not None and incremental:
            rows, prior = _candidates(con, plan, changes, _in_part("profile_id", k, parts))
            con.execute(f"create or replace temp table {target} as "
                        f"{diff_sql(plan, full_resync, rows, prior)}")
            con.execute("drop table if exists hw_keys")
        else:
            rows, prior = (_part_of(plan.audience, k, parts), _part_of(state, k, parts))
            with lowered_limit(con, COMPARE_MEMORY_LIMIT):
                con.execute(f"create or replace temp table {target} as "
                            f"{diff_sql(plan, full_resync, rows, prior)}")
        _check_one_row_per_member(con, plan, target)
        if parts > 1:
            con.execute("create or replace temp table hw_diff as select * from hw_part" if k == 0
                        else "insert into hw_diff select * from hw_part")
        yield target, rows, prior


def _rows_of(con: duckdb.DuckDBPyConnection, relation: str | None,
             params: list[str] | None = None) -> int:
    if relation is None:
        return 0
    (n,) = con.execute(f"select count(*) from {relation}", params or []).fetchone() or (0,)
    return int(n)


def _part_of(relation: str, k: int, parts: int) -> str:
    if parts == 1:
        return relation
    return f"(select * from {relation} as p where {_in_part('p.profile_id', k, parts)})"


def _check_one_row_per_member(con: duckdb.DuckDBPyConnection, plan: SyncPlan,
                              diff: str) -> None:
    dupes = con.execute(
        f"select profile_id from {diff} group by profile_id having count(*) > 1 limit 3"
    ).fetchall()
    if dupes:
        raise SyncConfigError(
            f"sync {plan.sync_name}: audience {plan.audience} has more than one row for "
            f"profile_id {', '.join(str(d[0]) for d in dupes)}; an audience must have one row "
            "per member. Fix the model (deduplicate on profile_id) and run again."
        )


def rows_relation(plan: SyncPlan, full_resync: bool, changes: Changes | None) -> str:
    """Where compute_diff leaves the audience rows of the members it diffed (an incremental
    plan's: of its last part)."""
    return "hw_rows" if changes is not None and not full_resync else plan.audience


def drop_plan_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Drop what compute_diff left behind."""
    for table in ("hw_diff", "hw_part", "hw_keys", "hw_rows", "hw_state", "hw_plan"):
        con.execute(f"drop table if exists {table}")


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
    match = (
        "o.profile_id = d.profile_id and o.action = d.action "
        "and o.row_hash is not distinct from d.row_hash"
    )
    # Outside a transaction: nobody else writes the state (the sync lock, and DuckDB's lock on
    # the state file), and the audience is an immutable published snapshot or the warehouse.
    changes = None if full_resync else changes_since_cursor(con, plan, log)
    whole = changes is None or full_resync
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
            where o.sync_name = ? and o.status = 'rejected' and {match}
              and o.last_run_id is distinct from ?""",
            [plan.sync_name, no_revive_run],
        ).fetchall()[0]
        # Open intents for an older version of the row (or a member no longer in the diff).
        # Every open intent is a candidate of an incremental plan, so this holds for both.
        # This plan's rows are pending, never touched here.
        superseded = con.execute(
            f"""delete from {SCHEMA}.outbox o
            where o.sync_name = ? and o.status in ('rejected', 'dead')
              and not exists (select 1 from hw_diff d where {match})""",
            [plan.sync_name],
        ).fetchall()[0]
        if by_action.get("leave"):
            # Leavers are gone from the state: logged as such (activations/state.py).
            append_state(con, plan.sync_name,
                         "(select profile_id, null::uhugeint as row_hash, null::json as "
                         "identifiers from hw_diff where action = 'leave')", "profile_id")
        cursor = None
        if log is not None and log.manifest.lineage and _audience_model(plan) in (
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
    match = (
        "o.profile_id = d.profile_id and o.action = d.action "
        "and o.row_hash is not distinct from d.row_hash"
    )
    (total,) = con.execute(f"select count(*) from {diff}").fetchone() or (0,)
    chunk_rows = plan_chunk_rows(int(total), chunk_rows)
    # The rows to write, numbered into chunks; an open intent for the same row is kept (its
    # key and attempts) instead. This plan's own rows cannot match: one row per member.
    con.execute(
        f"""create or replace temp table hw_plan as
        select d.profile_id, d.action, d.row_hash,
               (row_number() over () - 1) // {int(chunk_rows)} as chunk
        from {diff} d
        where d.action <> 'leave' and not exists (
            select 1 from {SCHEMA}.outbox o where o.sync_name = ? and {match})""",
        [plan.sync_name],
    )
    (chunks,) = con.execute("select coalesce(max(chunk) + 1, 0) from hw_plan").fetchone() or (0,)
    chunked = chunks > 1 and whole
    if chunked:
        # A whole-audience plan joins the audience once, not once per chunk: its members'
        # rows, in chunk order, so that each chunk reads only its own (zone maps on chunk).
        _plan_inputs(con, plan, rows, prior)
    payload = _json_object(plan.payload_columns)
    identifiers = _json_object(plan.identifier_columns)
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
    columns = ", ".join(f"a.{_q(c)}" for c in _read_columns(plan))
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
