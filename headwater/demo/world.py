"""`generate_world`: a synthetic e-commerce world in the raw landing tables, with ground truth.

numpy decides who does what (population.py, activity.py); DuckDB renders the rows (strings,
JSON) from those columns in a few set-based statements, so a million customers stay fast.
Dirt is injected on purpose and counted in WorldStats; demo_truth.* says what a perfect
pipeline would find.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime

import duckdb
import numpy as np
import pyarrow as pa

from headwater.demo import activity as A
from headwater.demo import sql_macros
from headwater.demo.catalog import (
    CURRENCY_BY_COUNTRY,
    EMAIL_DOMAINS,
    FIRST_NAMES,
    LAST_NAMES,
    LOCALE_BY_COUNTRY,
    PHONE_PLANS,
    PLACEHOLDER_EMAILS,
    PRODUCTS,
)
from headwater.demo.dirt import inject_dirt
from headwater.demo.population import TIERS, build_population
from headwater.demo.records import land_consent, land_crm, land_orders
from headwater.demo.truth import write_truth
from headwater.warehouse import create_raw_tables, scalar

RAW_TABLES = ("events", "orders", "crm_contacts", "consent")


@dataclass
class WorldStats:
    """What generate_world wrote: raw row counts and each kind of dirt, counted."""

    seed: int
    customers: int
    as_of: datetime
    raw_rows: dict[str, int] = field(default_factory=dict)
    # dirt kind -> rows carrying it (see dirt.py and records.py for the kinds)
    dirt: dict[str, int] = field(default_factory=dict)
    # raw phone format -> values written in it
    phone_formats: dict[str, int] = field(default_factory=dict)
    # other facts about the world (shared devices, churned customers, open carts...)
    facts: dict[str, int] = field(default_factory=dict)


def _to_us(ts: datetime) -> int:
    if ts.tzinfo is not None:
        ts = ts.astimezone(UTC).replace(tzinfo=None)
    return int((ts - datetime(1970, 1, 1)).total_seconds() * 1_000_000)


def generate_world(
    con: duckdb.DuckDBPyConnection, *, customers: int, seed: int, as_of: datetime
) -> WorldStats:
    """Write the demo world into raw.* (appending; callers wanting a clean world start from an
    empty file) and demo_truth.* (replaced). Same seed and as_of, same rows."""
    if customers < 10:
        raise ValueError(f"customers={customers}: the demo world needs at least 10 customers "
                         "(shared devices and dirt need a few people to work with).")
    as_of_us = _to_us(as_of)
    rng = np.random.default_rng(seed)
    pop = build_population(customers, rng, as_of_us)
    act = A.build_activity(pop, rng, as_of_us)

    create_raw_tables(con)
    con.execute("set enable_progress_bar = false")
    sql_macros.install(con)
    _register_people(con, pop, act, rng, seed)
    _register_events(con, act, rng)
    stats = WorldStats(seed=seed, customers=customers, as_of=as_of)
    _land_events(con, seed, as_of_us)
    land_orders(con, pop, act, rng, seed, stats)
    land_crm(con, pop, rng, seed, as_of_us, stats)
    land_consent(con, pop, act, rng, as_of_us, stats)
    inject_dirt(con, act, rng, seed, stats)
    write_truth(con, pop, act, seed, as_of_us, stats)
    _count(con, pop, act, stats)
    for name in ("_hw_ev", "_hw_c", "_hw_d", "_hw_cart", "_hw_prod"):
        con.execute(f"drop table if exists {name}")
    return stats


def _ascii_lower(names: np.ndarray) -> np.ndarray:
    folded = [unicodedata.normalize("NFKD", str(v)).encode("ascii", "ignore").decode()
              for v in names]
    return np.array(["".join(ch for ch in v.lower() if ch.isalpha()) for v in folded])


def _register_people(con: duckdb.DuckDBPyConnection, pop, act, rng, seed: int) -> None:
    n = pop.n
    cc = {c: plans[0].calling_code for c, plans in PHONE_PLANS.items()}
    first = pop.first_name_idx % len(FIRST_NAMES)
    last = pop.last_name_idx % len(LAST_NAMES)
    people = pa.table({
        "i": np.arange(n),
        "first_name": FIRST_NAMES[first],
        "last_name": LAST_NAMES[last],
        # email-safe forms, computed once per vocabulary entry rather than per customer
        "f": _ascii_lower(FIRST_NAMES)[first],
        "l": _ascii_lower(LAST_NAMES)[last],
        "domain": EMAIL_DOMAINS[pop.domain_idx % len(EMAIL_DOMAINS)],
        "domain2": EMAIL_DOMAINS[(pop.domain_idx + 3) % len(EMAIL_DOMAINS)],
        "country": pop.country.astype(str),
        "has2": pop.has_secondary_email,
        "nsn": pop.phone_nsn.astype(str),
        "signed_up": pop.signed_up,
        "tier_idx": pop.tier_idx,
        "points": pop.loyalty_points,
    })
    con.register("_hw_people", people)
    cc_case = " ".join(f"when '{c}' then '{v}'" for c, v in cc.items())
    cur_case = " ".join(f"when '{c}' then '{v}'" for c, v in CURRENCY_BY_COUNTRY.items())
    loc_case = " ".join(f"when '{c}' then '{v}'" for c, v in LOCALE_BY_COUNTRY.items())
    con.execute(f"""
        create or replace temp table _hw_c as
        with p as (select * from _hw_people)
        select i, printf('cust_%07d', i) as customer_id,
            case when signed_up then 'usr_' || substr(md5('{seed}:u:' || i), 1, 12) end as user_id,
            first_name, last_name, country,
            f || '.' || l || i || '@' || domain as email,
            case when has2 then left(f, 1) || l || '.' || i || '@' || domain2 end as email2,
            case when nsn <> '' then nsn end as nsn,
            case country {cc_case} end as cc,
            case when nsn <> '' then '+' || (case country {cc_case} end) || nsn end as phone,
            case country {cur_case} end as currency,
            case country {loc_case} end as locale,
            case when tier_idx >= 0 then {[str(t) for t in TIERS]}[tier_idx + 1] end as tier,
            points
        from p
    """)
    con.unregister("_hw_people")
    n_dev = len(pop.device_mobile)
    owner = np.repeat(np.arange(n), pop.n_devices)
    devices = pa.table({
        "d": np.arange(n_dev + act.n_shared_devices),
        "mobile": np.concatenate([pop.device_mobile, np.zeros(act.n_shared_devices, bool)]),
        "shared": np.arange(n_dev + act.n_shared_devices) >= n_dev,
        "owner": np.concatenate([owner, np.full(act.n_shared_devices, -1)]),
    })
    con.register("_hw_devices", devices)
    con.execute(f"""
        create or replace temp table _hw_d as
        select d, mobile, shared, owner, anonymous_id, device_id,
            -- context depends only on the device: rendered once per device, not per event
            json_object(
                'device', case when mobile then json_object('id', device_id, 'type', 'ios')
                               else json_object('type', 'browser') end,
                'locale', coalesce(locale, 'en-US'),
                'library', json_object('name', case when mobile then 'analytics-ios'
                                                    else 'analytics.js' end)
            ) as context
        from (
            select v.*, c.locale,
                hw_uuid('{seed}:' || case when shared then 'shared:' else 'dev:' end || d)
                    as anonymous_id,
                case when mobile then upper(hw_uuid('{seed}:hw:' || d)) end as device_id
            from _hw_devices v left join _hw_c c on c.i = v.owner
        )
    """)
    con.unregister("_hw_devices")
    con.register("_hw_products", pa.table({
        "k": np.arange(len(PRODUCTS)), "sku": [p[0] for p in PRODUCTS],
        "name": [p[1] for p in PRODUCTS], "price": [p[2] for p in PRODUCTS]}))
    con.execute("create or replace temp table _hw_prod as select * from _hw_products")
    con.unregister("_hw_products")
    con.register("_hw_item_arrow", pa.table({
        "cart": act.cart_item_cart, "item": np.arange(len(act.cart_item_cart)),
        "sku": act.cart_item_sku, "qty": act.cart_item_qty}))
    con.register("_hw_cart_arrow", pa.table({
        "k": np.arange(len(act.cart_session)), "revenue": act.cart_revenue,
        "customer": act.session_customer[act.cart_session],
        "at_us": act.session_us[act.cart_session], "open": act.session_open_cart[act.cart_session],
        "completed": act.cart_completed}))
    con.execute(f"""
        create or replace temp table _hw_cart as
        select c.k, 'cart_' || substr(md5('{seed}:c:' || c.k), 1, 16) as cart_id,
            c.revenue, c.customer, c.at_us, c.open, c.completed, i.products,
            -- rendered once per cart rather than once per event that carries it
            to_json(i.products) as products_json
        from _hw_cart_arrow c
        join (
            select it.cart, list({{'sku': p.sku, 'name': p.name, 'price': p.price,
                                   'quantity': it.qty}} order by it.item) as products
            from _hw_item_arrow it join _hw_prod p on p.k = it.sku
            group by it.cart
        ) i on i.cart = c.k
    """)
    con.unregister("_hw_item_arrow")
    con.unregister("_hw_cart_arrow")


def _register_events(con: duckdb.DuckDBPyConnection, act, rng) -> None:
    size = len(act.ev["kind"])
    ev = dict(act.ev)
    ev["email_variant"] = rng.integers(0, 10, size)
    ev["phone_format"] = rng.integers(0, 8, size)
    ev["placeholder"] = rng.integers(0, len(PLACEHOLDER_EMAILS), size)
    ev["page"] = rng.integers(0, 6, size)
    # Most messages land within seconds; some loaders batch for minutes to hours.
    late = rng.random(size) < 0.03
    ev["delay_us"] = np.where(late, rng.integers(60, 6 * 3600, size),
                              rng.integers(1, 5, size)) * A.SECOND_US
    con.register("_hw_ev_arrow", pa.table(ev))
    con.execute("create or replace temp table _hw_ev as select * from _hw_ev_arrow")
    con.unregister("_hw_ev_arrow")


def _land_events(con: duckdb.DuckDBPyConnection, seed: int, as_of_us: int) -> None:
    placeholders = list(PLACEHOLDER_EMAILS)
    con.execute(f"""
        insert into raw.events
        select hw_uuid('{seed}:m:' || e.seq) as message_id,
            ['page', 'screen', 'track', 'track', 'track', 'track', 'identify', 'alias'][e.kind + 1]
                as type,
            [null, null, 'Product Viewed', 'Product Added', 'Checkout Started', 'Order Completed',
             null, null][e.kind + 1] as event,
            case when e."user" then c.user_id end as user_id,
            case when e.kind <> {A.ALIAS} then d.anonymous_id end as anonymous_id,
            case when e.kind = {A.ALIAS} then d.anonymous_id end as previous_id,
            case when e.kind = {A.IDENTIFY} then json_object(
                'email', case e.email_kind
                    when {A.EMAIL_PRIMARY} then hw_dirty_email(c.email, e.email_variant)
                    when {A.EMAIL_SECONDARY} then hw_dirty_email(c.email2, e.email_variant)
                    else {placeholders}[e.placeholder + 1] end,
                'phone', case when e.with_phone and c.nsn is not null
                    then hw_dirty_phone(c.country, c.cc, c.nsn, true, e.phone_format) end,
                'first_name', c.first_name, 'last_name', c.last_name,
                'address', json_object('country', c.country))
            end as traits,
            case
                when e.kind = {A.PAGE} then json_object(
                    'path', ['/', '/new', '/men', '/women', '/sale', '/help'][e.page + 1],
                    'url', 'https://shop.example.com'
                        || ['/', '/new', '/men', '/women', '/sale', '/help'][e.page + 1])
                when e.kind = {A.SCREEN} then json_object(
                    'name', ['Home', 'New', 'Men', 'Women', 'Sale', 'Help'][e.page + 1])
                when e.kind = {A.VIEWED} then json_object(
                    'sku', p.sku, 'name', p.name, 'price', p.price, 'currency', c.currency)
                when e.kind in ({A.ADDED}, {A.CHECKOUT}) then json_object(
                    'cart_id', cart.cart_id, 'products', cart.products_json,
                    'value', cart.revenue, 'currency', c.currency)
                when e.kind = {A.COMPLETED} then json_object(
                    'cart_id', cart.cart_id, 'order_id', printf('ord_%09d', e."order"),
                    'revenue', cart.revenue, 'currency', c.currency,
                    'products', cart.products_json)
                else json('{{}}')
            end as properties,
            d.context,
            make_timestamp(e.ts) as "timestamp",
            make_timestamp(least(e.ts + e.delay_us, {as_of_us})) as received_at
        from _hw_ev e
        join _hw_c c on c.i = e.customer
        join _hw_d d on d.d = e.device
        left join _hw_cart cart on cart.k = e.cart
        left join _hw_prod p on p.k = e.sku
    """)


def _count(con: duckdb.DuckDBPyConnection, pop, act, stats: WorldStats) -> None:
    for table in RAW_TABLES:
        stats.raw_rows[table] = scalar(con, f"select count(*) from raw.{table}")
    stats.dirt["emails_with_case_or_whitespace"] = scalar(con, """
        select count(*) from (
            select json_extract_string(traits, '$.email') as e from raw.events
            union all select customer_email from raw.orders
            union all select email from raw.crm_contacts
            union all select identifier_value from raw.consent
                where lower(trim(identifier_type)) = 'email'
        ) where e <> lower(trim(e))
    """)
    stats.dirt["identify_placeholder_email"] = int(
        ((act.ev["kind"] == A.IDENTIFY) & (act.ev["email_kind"] == A.EMAIL_PLACEHOLDER)).sum())
    stats.dirt["placeholder_uses"] = (
        stats.dirt["identify_placeholder_email"] + stats.dirt["orders_placeholder_email"]
        + stats.dirt["orders_placeholder_phone"] + stats.dirt["crm_placeholder_email"])
    rows = con.execute(f"""
        select fmt, count(*) from (
            select hw_phone_format(c.country, true, e.phone_format) as fmt
            from _hw_ev e join _hw_c c on c.i = e.customer
            where e.kind = {A.IDENTIFY} and e.with_phone and c.nsn is not null
            union all
            select hw_phone_format(c.country, false, o.phone_format)
            from _hw_o o join _hw_c c on c.i = o.customer where o.with_phone
            union all
            select hw_phone_format(c.country, false, r.phone_format)
            from _hw_crm r join _hw_c c on c.i = r.customer where r.with_phone
            union all
            select hw_phone_format(c.country, false, r.phone_format)
            from _hw_consent r join _hw_c c on c.i = r.customer where r.subject = 2
        ) group by fmt order by fmt
    """).fetchall()
    stats.phone_formats = {fmt: int(count) for fmt, count in rows}
    stats.facts.update({
        "events": int(len(act.ev["kind"])),
        "signed_up_customers": int(pop.signed_up.sum()),
        "churned_customers": int(pop.churned.sum()),
        "crm_customers": int(pop.in_crm.sum()),
        "customers_with_secondary_email": int(pop.has_secondary_email.sum()),
        "open_carts": int(act.session_open_cart.sum()),
        "orders": int(act.cart_completed.sum()),
    })
    for name in ("_hw_o", "_hw_crm", "_hw_consent"):
        con.execute(f"drop table if exists {name}")
