"""Copy a sync's delivery records to the activity feed (headwater/activity.py), where dbt reads
them for attribution and the report.

Why here: delivery records live in the sync state file, which the process running a sync holds
and dbt never opens. So the process that ran a pass exports it, while it still holds the lock.

Crash safety: `headwater_state.activity_exports` remembers which finished passes (sync_runs
rows) were exported. An export writes the file first and records the passes after, so a crash
in between exports the same rows again on the next run (the dbt staging model drops copies on
the contract key), and never loses any: a pass a crash left unfinished is folded (finished) by
the next run and exported then.

`attempt` in the feed is the ordinal of the row among its idempotency key's delivery records
(by attempted_at, then run_id), not the engine's counter: that counter repeats when a pass
re-sends an unanswered record after a crash and restarts at 1 after a dead-letter replay, and
the feed's key (idempotency_key, attempt) must name one attempt. The ordinal is the same on a
re-export, because delivery records are append-only and later attempts are stamped later.

Status `dead` marks the last attempt of a record whose outbox intent is dead-lettered now (the
engine records it as `rejected`; the fold decides it is dead).
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from activations.state import SCHEMA
from headwater.activity import DELIVERY_SCHEMA, append_deliveries

EXPORTS_DDL = f"""create table if not exists {SCHEMA}.activity_exports (
    sync_name varchar not null,
    run_id varchar not null,
    rows bigint not null,
    exported_at timestamp not null
)"""


def unexported_runs(con: duckdb.DuckDBPyConnection, sync_name: str) -> list[str]:
    """Finished passes of `sync_name` whose delivery records are not in the feed yet."""
    con.execute(EXPORTS_DDL)
    rows = con.execute(
        f"""select run_id from {SCHEMA}.sync_runs r
        where sync_name = ? and finished_at is not null
          and not exists (select 1 from {SCHEMA}.activity_exports e
                          where e.sync_name = r.sync_name and e.run_id = r.run_id)
        order by started_at, run_id""",
        [sync_name],
    ).fetchall()
    return [str(r[0]) for r in rows]


def export_deliveries(
    con: duckdb.DuckDBPyConnection, sync_name: str, channel: str, destination: str,
    folder: Path,
) -> int:
    """Append the delivery records of every finished, unexported pass; returns rows written.

    `channel` and `destination` are the sync's (syncs.yml) at export time.
    """
    run_ids = unexported_runs(con, sync_name)
    if not run_ids:
        return 0
    table = con.sql(
        f"""with touched as (
            select distinct idempotency_key from {SCHEMA}.delivery_records
            where sync_name = $sync and list_contains($runs, run_id)
        ),
        numbered as (
            select d.*,
                   row_number() over (partition by d.idempotency_key
                                      order by d.attempted_at, d.run_id, d.attempt) as ordinal,
                   row_number() over (partition by d.idempotency_key
                                      order by d.attempted_at desc, d.run_id desc,
                                               d.attempt desc) as from_last
            from {SCHEMA}.delivery_records d join touched using (idempotency_key)
            where d.sync_name = $sync
        )
        select 'sync' as source, $sync as flow, null as journey, null as step,
               $channel as channel, $destination as destination, n.run_id,
               n.idempotency_key, n.profile_id, 'profile_id' as identifier_type,
               n.profile_id as identifier_value, n.action,
               case when n.from_last = 1 and n.status = 'rejected' and o.status = 'dead'
                    then 'dead' else n.status end as status,
               cast(n.ordinal as integer) as attempt, n.response_code, n.error,
               n.external_id, n.attempted_at
        from numbered n
        left join {SCHEMA}.outbox o
            on o.sync_name = $sync and o.idempotency_key = n.idempotency_key
        where list_contains($runs, n.run_id)
        order by n.attempted_at, n.idempotency_key""",
        params={"sync": sync_name, "runs": run_ids, "channel": channel,
                "destination": destination},
    ).to_arrow_table()
    append_deliveries(folder, table.cast(DELIVERY_SCHEMA))
    counts = dict(
        con.execute(
            f"select run_id, count(*) from {SCHEMA}.delivery_records"
            " where sync_name = ? and list_contains(?, run_id) group by run_id",
            [sync_name, run_ids],
        ).fetchall()
    )
    con.executemany(
        f"insert into {SCHEMA}.activity_exports values (?, ?, ?, now())",
        [[sync_name, run_id, int(counts.get(run_id, 0))] for run_id in run_ids],
    )
    return table.num_rows
