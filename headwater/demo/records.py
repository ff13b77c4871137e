"""The commerce system's orders, the CRM's contacts and the consent log of the demo world."""

from __future__ import annotations

from typing import TYPE_CHECKING

import duckdb
import numpy as np
import pyarrow as pa

from headwater.demo import activity as A
from headwater.demo.population import DAY_US, Population

if TYPE_CHECKING:
    from headwater.demo.world import WorldStats


def _register(con: duckdb.DuckDBPyConnection, name: str, cols: dict[str, np.ndarray]) -> None:
    con.register(name + "_arrow", pa.table(cols))
    con.execute(f"create or replace temp table {name} as select * from {name}_arrow")
    con.unregister(name + "_arrow")


def land_orders(con: duckdb.DuckDBPyConnection, pop: Population, act: A.Activity,
                rng: np.random.Generator, seed: int, stats: WorldStats) -> None:
    """One order per Order Completed event. Guests (no user_id) give only email and phone;
    some buyers type a placeholder email but leave a real phone."""
    ev = act.ev
    sel = np.flatnonzero(ev["kind"] == A.COMPLETED)
    cust = ev["customer"][sel]
    k = len(sel)
    has_phone = pop.has_phone[cust]
    placeholder_email = has_phone & (rng.random(k) < 0.03)
    secondary = pop.has_secondary_email[cust] & (rng.random(k) < 0.15)
    with_phone = has_phone & ((rng.random(k) < 0.7) | placeholder_email)
    placeholder_phone = ~with_phone & ~placeholder_email & (rng.random(k) < 0.15)
    _register(con, "_hw_o", {
        "order": ev["order"][sel], "customer": cust, "cart": ev["cart"][sel],
        "usr": ev["user"][sel], "ts": ev["ts"][sel] + 2 * A.SECOND_US,
        "email_choice": np.where(placeholder_email, 2, np.where(secondary, 1, 0)),
        "email_variant": rng.integers(0, 10, k), "with_phone": with_phone,
        "placeholder_phone": placeholder_phone, "phone_format": rng.integers(0, 8, k),
        "refunded": rng.random(k) < 0.04, "pick": rng.integers(0, 2, k),
    })
    con.execute("""
        insert into raw.orders
        select printf('ord_%09d', o."order"),
            case o.email_choice
                when 0 then hw_dirty_email(c.email, o.email_variant)
                when 1 then hw_dirty_email(c.email2, o.email_variant)
                else ['noemail@example.com', 'test@test.com'][o.pick + 1] end,
            case when o.placeholder_phone then '0000000000'
                 when o.with_phone
                    then hw_dirty_phone(c.country, c.cc, c.nsn, false, o.phone_format)
            end,
            case when o.usr then c.user_id end,
            cast(cart.revenue as decimal(18, 2)),
            c.currency,
            case when o.refunded then 'refunded' else 'completed' end,
            make_timestamp(o.ts),
            to_json(cart.products)
        from _hw_o o join _hw_c c on c.i = o.customer join _hw_cart cart on cart.k = o.cart
    """)
    stats.dirt["orders_placeholder_email"] = int(placeholder_email.sum())
    stats.dirt["orders_placeholder_phone"] = int(placeholder_phone.sum())
    stats.facts["guest_orders"] = int((~ev["user"][sel]).sum())


def land_crm(con: duckdb.DuckDBPyConnection, pop: Population, rng: np.random.Generator,
             seed: int, as_of_us: int, stats: WorldStats) -> None:
    """One contact per customer in the loyalty program; some were exported again after a
    change (older versions are superseded), a few twice verbatim."""
    cust = np.flatnonzero(pop.in_crm)
    k = len(cust)
    has_phone = pop.has_phone[cust]
    placeholder_email = has_phone & (rng.random(k) < 0.04)
    secondary = pop.has_secondary_email[cust] & (rng.random(k) < 0.1)
    with_phone = has_phone & ((rng.random(k) < 0.85) | placeholder_email)
    updated = pop.first_seen_us[cust] + (
        rng.random(k) * (as_of_us - DAY_US - pop.first_seen_us[cust])).astype(np.int64)
    older = rng.random(k) < 0.15
    dup = rng.random(k) < 0.01
    # version 0 = current; version 1 = an older export with a lower tier and fewer points.
    rows = np.concatenate([np.arange(k), np.flatnonzero(older), np.flatnonzero(dup)])
    version = np.concatenate(
        [np.zeros(k, int), np.ones(older.sum(), int), np.zeros(dup.sum(), int)])
    _register(con, "_hw_crm", {
        "contact": rows, "customer": cust[rows], "version": version,
        "email_choice": np.where(placeholder_email, 2, np.where(secondary, 1, 0))[rows],
        "email_variant": rng.integers(0, 10, k)[rows], "with_phone": with_phone[rows],
        "phone_format": rng.integers(0, 8, k)[rows],
        "tier_variant": rng.integers(0, 6, k)[rows],
        "updated_us": updated[rows] - version * (rng.integers(10, 90, len(rows)) * DAY_US),
    })
    con.execute("""
        insert into raw.crm_contacts
        select printf('crm_%07d', r.contact),
            case r.email_choice
                when 0 then hw_dirty_email(c.email, r.email_variant)
                when 1 then hw_dirty_email(c.email2, r.email_variant)
                else 'noemail@example.com' end,
            case when r.with_phone
                then hw_dirty_phone(c.country, c.cc, c.nsn, false, r.phone_format) end,
            case when r.tier_variant = 5 then upper(c.first_name) else c.first_name end,
            c.last_name,
            case r.tier_variant
                when 3 then upper(t.tier) when 4 then ' ' || t.tier || ' ' else t.tier end,
            cast(c.points / (1 + r.version) as integer),
            make_timestamp(r.updated_us)
        from _hw_crm r join _hw_c c on c.i = r.customer,
        lateral (select case when r.version = 0 or c.tier = 'bronze' then c.tier
            else ['bronze', 'bronze', 'silver', 'gold'][
                list_position(['bronze', 'silver', 'gold', 'platinum'], c.tier)] end as tier) t
    """)
    stats.dirt["crm_superseded_versions"] = int(older.sum())
    stats.dirt["crm_exact_duplicates"] = int(dup.sum())
    stats.dirt["crm_placeholder_email"] = int(placeholder_email.sum())


def land_consent(con: duckdb.DuckDBPyConnection, pop: Population, act: A.Activity,
                 rng: np.random.Generator, as_of_us: int, stats: WorldStats) -> None:
    """Grants and opt-outs per channel; some opt-outs are recorded against a secondary email,
    so a profile's consent must look at all of its identifiers."""
    n = pop.n
    parts: list[tuple[np.ndarray, int, int]] = []  # (customers, subject kind, channel)
    parts.append((np.flatnonzero(rng.random(n) < 0.5), 0, 0))  # email channel, primary email
    parts.append((np.flatnonzero(pop.has_phone & (rng.random(n) < 0.3)), 2, 1))  # sms, phone
    parts.append((np.flatnonzero(rng.random(n) < 0.35), 0, 2))  # ads, primary email
    parts.append((np.flatnonzero(pop.signed_up & (rng.random(n) < 0.05)), 3, 2))  # ads, user_id
    cust = np.concatenate([p[0] for p in parts])
    subject = np.concatenate([np.full(len(p[0]), p[1]) for p in parts])
    channel = np.concatenate([np.full(len(p[0]), p[2]) for p in parts])
    span = as_of_us - pop.first_seen_us[cust]
    granted_at = pop.first_seen_us[cust] + (rng.random(len(cust)) * span * 0.5).astype(np.int64)
    opt_out = rng.random(len(cust)) < 0.2
    out_at = granted_at + (rng.random(len(cust)) * (as_of_us - granted_at)).astype(np.int64)
    # Opt-outs sent from a secondary address: only visible through identity resolution.
    sec = np.flatnonzero(pop.has_secondary_email & (rng.random(n) < 0.3))
    all_cust = np.concatenate([cust, cust[opt_out], sec])
    m = len(all_cust)
    _register(con, "_hw_consent", {
        "customer": all_cust,
        "subject": np.concatenate([subject, subject[opt_out], np.full(len(sec), 1)]),
        "channel": np.concatenate([channel, channel[opt_out], np.zeros(len(sec), int)]),
        "granted": np.concatenate([np.ones(len(cust), bool), np.zeros(opt_out.sum() + len(sec),
                                                                       bool)]),
        "ts": np.concatenate([granted_at, out_at[opt_out], as_of_us - (
            rng.random(len(sec)) * 30 * DAY_US).astype(np.int64) - 60 * A.SECOND_US]),
        "email_variant": rng.integers(0, 10, m), "phone_format": rng.integers(0, 8, m),
        "type_variant": rng.integers(0, 10, m),
    })
    con.execute("""
        insert into raw.consent
        select case when r.type_variant = 9 then upper(t.type) else t.type end,
            case r.subject
                when 0 then hw_dirty_email(c.email, r.email_variant)
                when 1 then hw_dirty_email(c.email2, r.email_variant)
                when 2 then hw_dirty_phone(c.country, c.cc, c.nsn, false, r.phone_format)
                else c.user_id end,
            ['email', 'sms', 'ads'][r.channel + 1], r.granted, make_timestamp(r.ts)
        from _hw_consent r join _hw_c c on c.i = r.customer,
        lateral (select ['email', 'email', 'phone', 'user_id'][r.subject + 1] as type) t
    """)
    stats.facts["consent_opt_outs"] = int(opt_out.sum() + len(sec))
    stats.facts["consent_secondary_email_opt_outs"] = len(sec)
