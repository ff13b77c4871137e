"""Malformed and duplicated rows, added on purpose and counted.

Broken rows are *copies* of good ones with a defect (and, where it matters, a new id), so the
clean world stays intact and the ground truth stays achievable: staging must quarantine or
collapse exactly these rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from headwater.demo import activity as A
from headwater.warehouse import scalar

if TYPE_CHECKING:
    from headwater.demo.world import WorldStats

# defect -> share of the events it is applied to (at least 2 rows each)
EVENT_DEFECTS: dict[str, float] = {
    "exact_duplicate": 0.015,
    "conflicting_duplicate": 0.0005,
    "missing_message_id": 0.0005,
    "unknown_type": 0.0005,
    "missing_timestamp": 0.0005,
    "track_without_event": 0.0005,
    "missing_identity": 0.0005,
}

# How each defect rewrites a copy of the row (a DuckDB `select * replace (...)` list).
_EVENT_REWRITE = {
    # The loader sent the same message again, later.
    "exact_duplicate": "received_at + interval 37 second as received_at",
    # Same id, different content: a buggy SDK reusing ids.
    "conflicting_duplicate": "received_at + interval 41 second as received_at, "
                             "json_object('replayed', true) as properties",
    "missing_message_id": "null as message_id",
    "unknown_type": "hw_uuid('{seed}:bad:type:' || message_id) as message_id, 'trak' as type",
    "missing_timestamp": "hw_uuid('{seed}:bad:ts:' || message_id) as message_id, "
                         "null as \"timestamp\"",
    "track_without_event": "hw_uuid('{seed}:bad:ev:' || message_id) as message_id, '  ' as event",
    "missing_identity": "hw_uuid('{seed}:bad:id:' || message_id) as message_id, null as user_id, "
                        "null as anonymous_id",
}


def _pick(rng: np.random.Generator, candidates: np.ndarray, share: float, total: int) -> np.ndarray:
    size = min(len(candidates), max(2, int(round(total * share))))
    return np.sort(rng.choice(candidates, size=size, replace=False))


def inject_dirt(con: duckdb.DuckDBPyConnection, act: A.Activity, rng: np.random.Generator,
                seed: int, stats: WorldStats) -> None:
    kinds = act.ev["kind"]
    total = len(kinds)
    everything = np.arange(total)
    tracks = np.flatnonzero((kinds >= A.VIEWED) & (kinds <= A.COMPLETED))
    not_alias = np.flatnonzero(kinds != A.ALIAS)
    pools = {"track_without_event": tracks, "missing_identity": not_alias}
    picks = {d: _pick(rng, pools.get(d, everything), share, total)
             for d, share in EVENT_DEFECTS.items()}
    # One scan of raw.events fetches every original a defect will copy.
    con.register("_hw_pick", pa.table({
        "seq": np.concatenate(list(picks.values())),
        "defect": np.repeat(list(picks), [len(v) for v in picks.values()]),
    }))
    con.execute(f"""
        create or replace temp table _hw_dirty_src as
        select p.defect, e.* from raw.events e
        join (select defect, hw_uuid('{seed}:m:' || seq) as message_id from _hw_pick) p
            using (message_id)
    """)
    con.unregister("_hw_pick")
    for defect, seqs in picks.items():
        rewrite = _EVENT_REWRITE[defect].format(seed=seed)
        con.execute(f"""
            insert into raw.events
            select message_id, type, event, user_id, anonymous_id, previous_id, traits,
                   properties, context, "timestamp", received_at
            from (select * exclude (defect) replace ({rewrite}) from _hw_dirty_src
                  where defect = '{defect}')
        """)
        stats.dirt[f"events_{defect}"] = len(seqs)
    con.execute("drop table _hw_dirty_src")

    # Orders: a re-sent row, refunds booked as negative orders, rows without an id.
    n_orders = scalar(con, "select count(*) from raw.orders")
    for defect, clause, share in (
        ("exact_duplicate", "", 0.005),
        ("negative_total", "order_id || '-R' as order_id, -total as total", 0.002),
        ("missing_order_id", "null as order_id", 0.001),
    ):
        size = min(n_orders, max(2, int(round(n_orders * share))))
        if size == 0:
            continue
        replace = f"replace ({clause})" if clause else ""
        con.execute(f"""
            insert into raw.orders
            select * {replace} from (
                select distinct on (order_id) * from raw.orders
                where order_id is not null and total >= 0
            )
            order by hash(order_id, {seed}, '{defect}') limit {size}
        """)
        stats.dirt[f"orders_{defect}"] = size

    n_crm = scalar(con, "select count(*) from raw.crm_contacts")
    size = min(n_crm, max(2, n_crm // 1000))
    con.execute(f"""
        insert into raw.crm_contacts
        select * replace (null as contact_id) from raw.crm_contacts
        order by hash(contact_id, updated_at, {seed}) limit {size}
    """)
    stats.dirt["crm_missing_contact_id"] = size

    # Consent: re-sent rows, unusable subjects and unknown channels.
    n_consent = scalar(con, "select count(*) from raw.consent")
    for defect, clause, share in (
        ("exact_duplicate", "", 0.01),
        ("invalid_identifier", "'phone' as identifier_type, "
                               "['unknown', 'n/a', '0000000000', '12']"
                               "[cast(1 + hash(recorded_at) % 4 as bigint)]"
                               " as identifier_value", 0.002),
        ("unknown_channel", "'fax' as channel", 0.001),
    ):
        size = min(n_consent, max(2, int(round(n_consent * share))))
        replace = f"replace ({clause})" if clause else ""
        con.execute(f"""
            insert into raw.consent
            select * {replace} from raw.consent
            where identifier_type is not null and channel in ('email', 'sms', 'ads')
            order by hash(identifier_value, channel, recorded_at, granted, {seed}, '{defect}')
            limit {size}
        """)
        stats.dirt[f"consent_{defect}"] = size
