"""The diff, in the warehouse: the audience now against what the destination last accepted.

One full outer join between the consent-gated audience (profile_id, row hash) and the sync's
state table gives adds, changes (by row hash) and removes. Only the diff is materialized, as
outbox rows, in the same transaction that records which open intents it supersedes or revives;
nothing of the audience leaves the warehouse here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import duckdb

from activations.config import Mode, SyncConfigError
from activations.consent import consent_column, consent_predicate
from activations.destinations.base import Channel
from activations.state import SCHEMA, state_exists, state_table


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


def _desired_sql(plan: SyncPlan) -> str:
    ids_present = " and ".join(f"a.{_q(c)} is not null" for c in plan.identifier_columns)
    return (
        f"select cast(a.profile_id as varchar) as profile_id, "
        f"{row_hash_sql(plan.payload_columns)} as row_hash "
        f"from {plan.audience} a where {consent_predicate(plan.channel)} and {ids_present}"
    )


def _state_sql(con: duckdb.DuckDBPyConnection, sync_name: str) -> str:
    if state_exists(con, sync_name):
        return state_table(sync_name)
    return (
        "(select null::varchar as profile_id, null::uhugeint as row_hash, "
        "null::json as identifiers where false)"
    )


def diff_sql(con: duckdb.DuckDBPyConnection, plan: SyncPlan, full_resync: bool) -> str:
    """(profile_id, action, row_hash) for everything that must change at the destination.

    `leave` rows (append mode only) are members who left: dropped from the state without a
    request, so that coming back sends the message again.
    """
    state = _state_sql(con, plan.sync_name)
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
        f"with d as ({_desired_sql(plan)}) "
        f"select coalesce(d.profile_id, s.profile_id) as profile_id, {action} as action, "
        f"coalesce(d.row_hash, s.row_hash) as row_hash "
        f"from d full outer join {state} s on s.profile_id = d.profile_id where {keep}"
    )


@dataclass(frozen=True)
class PlanCounts:
    by_action: dict[str, int]
    revived: int
    superseded: int

    @property
    def planned(self) -> int:
        return sum(n for a, n in self.by_action.items() if a != "leave")


def compute_diff(
    con: duckdb.DuckDBPyConnection, plan: SyncPlan, full_resync: bool
) -> dict[str, int]:
    """Materialize the diff as temp table hw_diff; return counts per action."""
    con.execute(f"create or replace temp table hw_diff as {diff_sql(con, plan, full_resync)}")
    dupes = con.execute(
        "select profile_id from hw_diff group by profile_id having count(*) > 1 limit 3"
    ).fetchall()
    if dupes:
        raise SyncConfigError(
            f"sync {plan.sync_name}: audience {plan.audience} has more than one row for "
            f"profile_id {', '.join(str(d[0]) for d in dupes)}; an audience must have one row "
            "per member. Fix the model (deduplicate on profile_id) and run again."
        )
    rows = con.execute("select action, count(*) from hw_diff group by action").fetchall()
    return {str(a): int(n) for a, n in rows}


def write_plan(
    con: duckdb.DuckDBPyConnection,
    plan: SyncPlan,
    run_id: str,
    full_resync: bool,
    no_revive_run: str | None,
) -> PlanCounts:
    """Diff and write the outbox in one transaction (all of it is committed before any send)."""
    st = state_table(plan.sync_name)
    match = (
        "o.profile_id = d.profile_id and o.action = d.action "
        "and o.row_hash is not distinct from d.row_hash"
    )
    con.execute("begin transaction")
    try:
        by_action = compute_diff(con, plan, full_resync)
        # Rejected intents the diff still wants: retry with their key and attempt count.
        revived = con.execute(
            f"""update {SCHEMA}.outbox o set status = 'pending', updated_at = now()
            from hw_diff d
            where o.sync_name = ? and o.status = 'rejected' and {match}
              and o.last_run_id is distinct from ?""",
            [plan.sync_name, no_revive_run],
        ).fetchall()[0]
        # Open intents for an older version of the row (or a member no longer in the diff).
        superseded = con.execute(
            f"""delete from {SCHEMA}.outbox o
            where o.sync_name = ? and o.status in ('rejected', 'dead')
              and not exists (select 1 from hw_diff d where {match})""",
            [plan.sync_name],
        ).fetchall()[0]
        con.execute(f"delete from {st} s using hw_diff d where d.action = 'leave' "
                    "and s.profile_id = d.profile_id")
        payload = _json_object(plan.payload_columns)
        identifiers = _json_object(plan.identifier_columns)
        con.execute(
            f"""insert into {SCHEMA}.outbox (sync_name, idempotency_key, run_id, profile_id,
                action, row_hash, payload, identifiers, status, attempts, created_at, updated_at)
            select ?, md5(concat_ws(':', ?, ?, d.profile_id, d.action)), ?, d.profile_id,
                d.action, d.row_hash,
                case when d.action = 'remove' then s.identifiers else {payload} end,
                case when d.action = 'remove' then s.identifiers else {identifiers} end,
                'pending', 0, now(), now()
            from hw_diff d
            left join {plan.audience} a
              on d.action <> 'remove' and cast(a.profile_id as varchar) = d.profile_id
            left join {st} s on d.action = 'remove' and s.profile_id = d.profile_id
            where d.action <> 'leave' and not exists (
                select 1 from {SCHEMA}.outbox o where o.sync_name = ? and {match})""",
            [plan.sync_name, plan.sync_name, run_id, run_id, plan.sync_name],
        )
        con.execute("drop table hw_diff")
        con.execute("commit")
    except BaseException:
        con.execute("rollback")
        raise
    return PlanCounts(
        by_action=by_action,
        revived=int(revived[0]) if revived else 0,
        superseded=int(superseded[0]) if superseded else 0,
    )
