"""A lower bound for identity resolution in SQL: the least work any resolution does, no rules.

The identity benchmark's target (SQL within 2x of scipy's connected_components on the same
edges) compares a pipeline that starts from staged records with a baseline that is handed the
edges. This measures, on the same staged world and in the same run, how close to the baseline
any SQL design can get: the steps every resolution needs, each in the cheapest form measured on
this machine, with none of the rules that make the real models correct.

1. records: fold the staged events, orders and CRM rows into distinct identifier combinations
   (edges come from identifiers that arrived together);
2. edges: each record's identifiers as 64-bit hashes of (value, type), no dictionary lookup; a
   star to the record's highest-priority identifier; distinct;
3. identifiers: one row per (type, value) with its first sighting, keyed by the same hash;
4. labels: ONE pass of label propagation (each identifier takes the least id of its closed
   neighbourhood). Every connected-components algorithm reads every edge at least once, so one
   pass is a lower bound for any of them; chains need more;
5. identity_map: per component, the canonical member (earliest seen, type priority, value) and
   its md5 profile id, then (type, value, profile_id) for every identifier. One pass leaves
   2.3x as many labels as there are components (1M customers), so this step runs on the true
   components instead, computed off the clock with scipy from the floor's own edges.

Left out, each costing more on top: the blocklist, over-sharing detection, typing an alias's
previous_id, the one-user_id split, collision checks on the hashes, the merge evidence and the
rejections. The result is not a resolution anyone should use; only its time means something.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# The identity models' own session settings (macros/identity/identity_settings.sql), so that
# both sides write text tables the same way.
SETTINGS = (
    "set preserve_insertion_order = false",
    "set disabled_compression_methods = 'fsst,dict_fsst'",
)

# Types in the identity models' priority order (identity_type_priority): the anchor of a record
# is its first non-null column in this order.
TYPES = (
    ("user_id", "user_id"),
    ("crm_contact_id", "crm_contact_id"),
    ("email", "email"),
    ("phone", "phone"),
    ("anonymous_id", "anonymous_id"),
    # an alias's previous_id, typed as an anonymous_id (the real models look it up first)
    ("anonymous_id", "previous_id"),
)


def _hashed(column: str, priority: int) -> str:
    return f"case when {column} is not null then hash({column}, {priority}) end"


def _priority(identifier_type: str) -> int:
    return [t for t, _ in TYPES].index(identifier_type) + 1


def statements() -> list[tuple[str, str]]:
    """(step, SQL) in order; each writes a floor_* table."""
    columns = [column for _, column in TYPES]
    hashed = ", ".join(
        f"{_hashed(column, _priority(t))} as h_{column}" for t, column in TYPES)
    per_type = "\n            union all\n            ".join(
        f"select '{t}' as identifier_type, {_priority(t)} as priority, {column} as value, "
        f"first_seen_at from floor_records where {column} is not null"
        for t, column in TYPES)
    return [
        ("records", f"""
        create or replace table floor_records as
        select {', '.join(columns)}, min(seen_at) as first_seen_at
        from (
            select user_id, cast(null as varchar) as crm_contact_id, email, phone, anonymous_id,
                case when message_type = 'alias' then previous_id end as previous_id,
                event_at as seen_at
            from stg_events
            union all
            select user_id, null, email, phone, null, null, ordered_at from stg_orders
            union all
            select null, contact_id, email, phone, null, null, updated_at from stg_crm_contacts
        ) as staged
        group by all"""),
        ("edges", f"""
        create or replace table floor_edges as
        with hashed as (select {hashed} from floor_records),
        stars as (
            select coalesce({', '.join(f'h_{c}' for c in columns)}) as anchor,
                unnest([{', '.join(f'h_{c}' for c in columns)}]) as other
            from hashed
        )
        select distinct least(anchor, other) as a, greatest(anchor, other) as b
        from stars
        where other is not null and other <> anchor"""),
        ("identifiers", f"""
        create or replace table floor_identifiers as
        select identifier_type, priority, value, hash(value, priority) as id,
            min(first_seen_at) as first_seen_at
        from (
            {per_type}
        ) as observed
        group by identifier_type, priority, value"""),
        ("labels (one pass)", """
        create or replace table floor_labels as
        select i.id, least(i.id, coalesce(n.label, i.id)) as label
        from floor_identifiers as i
        left join (
            select src, min(dst) as label
            from (select a as src, b as dst from floor_edges
                  union all select b, a from floor_edges) as directed
            group by src
        ) as n on i.id = n.src"""),
        ("identity_map", """
        create or replace table floor_identity_map as
        with members as (
            select i.id, i.identifier_type, i.priority, i.value, i.first_seen_at, c.label
            from floor_identifiers as i
            inner join floor_components as c on i.id = c.id
        ),
        canonical as (
            select label, arg_min(id, (first_seen_at, priority, value)) as canonical_id
            from members
            group by label
        ),
        profiles as (
            select c.label, md5(i.identifier_type || ':' || i.value) as profile_id
            from canonical as c
            inner join floor_identifiers as i on c.canonical_id = i.id
        )
        select m.identifier_type, m.value as identifier_value, p.profile_id
        from members as m
        inner join profiles as p on m.label = p.label"""),
    ]


def _components(con: duckdb.DuckDBPyConnection) -> None:
    """floor_components(id, label): the floor graph's true components (not timed)."""
    edges = con.sql("select a, b from floor_edges").fetchnumpy()
    ids = con.sql("select id from floor_identifiers").fetchnumpy()["id"]
    a, b = edges["a"], edges["b"]
    unique, codes = np.unique(np.concatenate([ids, a, b]), return_inverse=True)
    n, m = len(ids), len(a)
    graph = coo_matrix(
        (np.ones(m, dtype=np.int8), (codes[n : n + m], codes[n + m :])),
        shape=(len(unique), len(unique)),
    )
    _, labels = connected_components(graph, directed=False)
    con.register("floor_components_in", pa.table({"id": unique, "label": labels}))
    con.execute("create or replace table floor_components as select * from floor_components_in")
    con.unregister("floor_components_in")


def run_floor(db: Path) -> dict[str, float]:
    """Seconds per step (and 'total') on the staged world in db; drops its tables after.

    Raises AssertionError if the floor's identity_map does not give one profile per component
    (then it did not do the work it stands for)."""
    times: dict[str, float] = {}
    with duckdb.connect(str(db)) as con:
        for setting in SETTINGS:
            con.execute(setting)
        for name, sql in statements():
            if name == "identity_map":
                _components(con)
            started = time.perf_counter()
            con.execute(sql)
            times[name] = time.perf_counter() - started
        profiles, components = con.execute(
            "select (select count(distinct profile_id) from floor_identity_map), "
            "(select count(distinct label) from floor_components)"
        ).fetchall()[0]
        if profiles != components:
            raise AssertionError(f"floor: {profiles} profiles for {components} components")
        for table in ("records", "edges", "identifiers", "labels", "components", "identity_map"):
            con.execute(f"drop table floor_{table}")
    times["total"] = sum(times.values())
    return times
