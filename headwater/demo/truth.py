"""Ground truth of the demo world, in schema demo_truth (never read by models).

identifiers: every usable identifier of every customer, NORMALIZED the way staging must
normalize it (email lower/trim, phone E.164), without placeholders and shared devices. Each
customer's identifiers are connected through co-occurrence in some record by construction
(activity.py: every device has an identify carrying the primary email; the signup identify,
or the first device's identify for guests, carries the phone; CRM rows carry email or phone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from headwater.demo import activity as A
from headwater.demo.catalog import PLACEHOLDER_EMAILS, PLACEHOLDER_PHONES
from headwater.demo.population import Population

if TYPE_CHECKING:
    from headwater.demo.world import WorldStats


def write_truth(con: duckdb.DuckDBPyConnection, pop: Population, act: A.Activity, seed: int,
                as_of_us: int, stats: WorldStats) -> None:
    con.execute("create schema if not exists demo_truth")
    signup = np.where(pop.signed_up, act.signup_us, 0)
    con.register("_hw_truth_arrow", pa.table({
        "i": np.arange(pop.n), "signed_up": pop.signed_up, "churned": pop.churned,
        "first_seen_us": pop.first_seen_us, "last_active_us": pop.last_active_us,
        "signup_us": signup, "engagement": pop.engagement, "buy_affinity": pop.buy_affinity,
        "in_crm": pop.in_crm, "n_devices": pop.n_devices,
    }))
    con.execute(f"""
        create or replace table demo_truth.customers as
        with orders as (
            select customer, count(*) as orders, sum(revenue) as revenue,
                max(at_us) as last_order_us,
                count(*) filter (where at_us >= {as_of_us - 30 * 86_400 * 1_000_000})
                    as orders_last_30d
            from _hw_cart where completed group by customer
        ),
        carts as (
            select customer, max(at_us) as open_cart_us from _hw_cart where open group by customer
        )
        select c.customer_id, c.user_id, c.email, c.email2 as secondary_email, c.phone,
            c.country, c.first_name, c.last_name,
            case when t.in_crm then printf('crm_%07d', r.contact_rank) end as crm_contact_id,
            c.tier as loyalty_tier, case when t.in_crm then c.points end as loyalty_points,
            t.signed_up, t.churned, t.engagement, t.buy_affinity, t.n_devices,
            make_timestamp(t.first_seen_us) as first_seen_at,
            make_timestamp(t.last_active_us) as last_active_at,
            case when t.signed_up then make_timestamp(t.signup_us) end as signed_up_at,
            coalesce(o.orders, 0) as orders, coalesce(o.revenue, 0) as revenue,
            make_timestamp(o.last_order_us) as last_order_at,
            coalesce(o.orders_last_30d, 0) as orders_last_30d,
            make_timestamp(oc.open_cart_us) as open_cart_at
        from _hw_c c
        join _hw_truth_arrow t on t.i = c.i
        left join (select i, row_number() over (order by i) - 1 as contact_rank
                   from _hw_truth_arrow where in_crm) r on r.i = c.i
        left join orders o on o.customer = c.i
        left join carts oc on oc.customer = c.i
    """)
    con.unregister("_hw_truth_arrow")
    n_own = int(pop.n_devices.sum())
    con.register("_hw_members", pa.table({
        "customer": act.shared_members[:, 0], "d": act.shared_members[:, 1] + n_own}))
    con.execute("""
        create or replace table demo_truth.shared_devices as
        select d.anonymous_id, count(distinct m.customer) as users
        from _hw_d d join _hw_members m on m.d = d.d
        group by d.anonymous_id
    """)
    con.unregister("_hw_members")
    con.execute("""
        create or replace table demo_truth.identifiers as
        select * from (
            select customer_id, 'user_id' as identifier_type, user_id as identifier_value
            from demo_truth.customers
            union all select customer_id, 'email', email from demo_truth.customers
            union all select customer_id, 'email', secondary_email from demo_truth.customers
            union all select customer_id, 'phone', phone from demo_truth.customers
            union all select customer_id, 'crm_contact_id', crm_contact_id from demo_truth.customers
            union all
            select printf('cust_%07d', d.owner), 'anonymous_id', d.anonymous_id
            from _hw_d d where not d.shared
        )
        where identifier_value is not null
    """)
    # What identity resolution must keep out of merging (raw spelling and normalized value:
    # null when normalization already rejects it).
    rows = [("email", v, v if "@" in v else None) for v in PLACEHOLDER_EMAILS]
    rows += [("phone", v, None) for v in PLACEHOLDER_PHONES]
    con.execute("""create or replace table demo_truth.placeholders (
        identifier_type varchar, raw_value varchar, normalized_value varchar)""")
    con.executemany("insert into demo_truth.placeholders values (?, ?, ?)", rows)
    con.execute(f"""
        create or replace table demo_truth.world as
        select {seed} as seed, {pop.n} as customers, make_timestamp({as_of_us}) as as_of
    """)
    stats.facts["shared_devices"] = act.n_shared_devices
    stats.facts["shared_device_users"] = len(act.shared_members)
