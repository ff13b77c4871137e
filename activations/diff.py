"""The diff, in the warehouse: the audience now against what the destination last accepted.

One full outer join between the consent-gated audience (profile_id, row hash) and the sync's
state table gives adds, changes (by row hash) and removes. Only the diff is materialized (temp
table hw_diff), and activations/plan.py writes it as outbox rows; nothing of the audience
leaves the warehouse here.

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
from activations.memory import lowered_limit, release_memory, setting
from activations.state import (
    SCHEMA,
    current_state_sql,
    outbox_counts,
    read_cursor,
    row_count,
    state_exists,
    state_log_exists,
    state_rows,
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


def quote(column: str) -> str:
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
    parts = [f"coalesce(cast({alias}.{quote(c)} as varchar), chr(30))" for c in columns]
    key = f"cast({alias}.profile_id as varchar)"
    return f"md5_number(concat_ws(chr(31), {key}, {', '.join(parts)}))"


def json_object_sql(columns: Sequence[str], alias: str = "a") -> str:
    args = ", ".join(f"'{c}', {alias}.{quote(c)}" for c in columns)
    return f"json_object({args})"


def plan_fingerprint(plan: SyncPlan) -> str:
    """What a cursor vouches for: the same audience, hashed and gated the same way."""
    parts = [HASH_VERSION, plan.audience, plan.mode.value, consent_predicate(plan.channel),
             list(plan.identifier_columns), list(plan.payload_columns)]
    return hashlib.md5(json.dumps(parts).encode()).hexdigest()


def audience_model(plan: SyncPlan) -> str:
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
    files = log.manifest.changes_after(audience_model(plan), cursor.seq)
    if files is None:
        return None
    if not files:
        return Changes(None)
    return Changes(change_relation(files, log.folder), all(f.old_rows for f in files))


def ids_present_sql(plan: SyncPlan, alias: str = "a") -> str:
    """True where the row carries every identifier the sync sends (the identifier gate)."""
    present = [f"{alias}.{quote(c)} is not null" for c in plan.identifier_columns]
    return " and ".join(present) or "true"


def _desired_sql(plan: SyncPlan, rows: str) -> str:
    return (
        f"select cast(a.profile_id as varchar) as profile_id, "
        f"{row_hash_sql(plan.payload_columns)} as row_hash "
        f"from {rows} a where {consent_predicate(plan.channel)} and {ids_present_sql(plan)}"
    )


def read_columns(plan: SyncPlan) -> list[str]:
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
    columns = ", ".join(quote(c) for c in read_columns(plan))
    branches: list[str] = []
    if changes.relation is not None:
        fields = ", ".join(f"{quote(c)} := {OLD}.{quote(c)}" for c in read_columns(plan))
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
            f"{json_object_sql(plan.identifier_columns, 'o')} as identifiers "
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
# held memory in proportion to the churn: the diff of 1% churn (100k change rows) at 10M
# members peaked at 191 MB against 163 MB at 1M (10k rows). In parts of 25,000: 172 MB, and
# what it holds stops growing with the churn. Each part reads the change files again, so
# smaller parts cost time (parts of 10,000: 166 MB, the diff 2.5x slower).
CANDIDATE_PART_ROWS = 25_000

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
    compared = None if full_resync else changes
    if compared is not None:
        changed = row_count(con, compared.relation) if compared.relation else 0
        candidates = changed + sum(outbox_counts(con, plan.sync_name).values())
        parts = max(1, -(-candidates // CANDIDATE_PART_ROWS))
    else:
        state = state_sql(con, plan.sync_name)
        parts = max(1, -(-state_rows(con, plan.sync_name) // COMPARE_PART_ROWS))
    limit = setting(con, "memory_limit")
    for k in range(parts):
        if parts > 1:
            # What the last part's queries left behind: DuckDB's cached blocks and the memory
            # its allocator keeps after a query (memory.release_memory). At 10M members the ten
            # parts of 1% churn otherwise added up to 40 MB more than the one part at 1M.
            release_memory(con, limit)
        target = "hw_diff" if parts == 1 else "hw_part"
        if compared is not None:
            rows, prior = _candidates(con, plan, compared, _in_part("profile_id", k, parts))
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
