"""What the demo customers do: sessions, the commerce funnel, identify and alias calls.

Everything is built as numpy columns (one entry per session, event or cart), with np.repeat and
offsets instead of per-customer loops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headwater.demo.catalog import PRODUCTS
from headwater.demo.population import DAY_US, Population

SECOND_US = 1_000_000

# Event kinds (the `kind` column); the SQL landing step turns them into Segment messages.
PAGE, SCREEN, VIEWED, ADDED, CHECKOUT, COMPLETED, IDENTIFY, ALIAS = range(8)
# Which email an identify carries.
EMAIL_PRIMARY, EMAIL_SECONDARY, EMAIL_PLACEHOLDER = 1, 2, 3


@dataclass
class Activity:
    # sessions
    session_customer: np.ndarray
    session_us: np.ndarray
    session_device: np.ndarray
    session_open_cart: np.ndarray  # bool: forced recent abandoned cart
    signup_us: np.ndarray  # per customer; int64 max when never signed up
    shared_members: np.ndarray  # (customer, shared device number) pairs
    n_shared_devices: int
    # carts (one per session that added to cart)
    cart_session: np.ndarray
    cart_item_cart: np.ndarray
    cart_item_sku: np.ndarray
    cart_item_qty: np.ndarray
    cart_revenue: np.ndarray
    cart_completed: np.ndarray  # bool: turned into an order
    # events
    ev: dict[str, np.ndarray]


def _offsets(counts: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)


def _positions(counts: np.ndarray) -> np.ndarray:
    """0..count-1 for each group, concatenated."""
    total = int(counts.sum())
    return np.arange(total, dtype=np.int64) - np.repeat(_offsets(counts), counts)


def build_activity(pop: Population, rng: np.random.Generator, as_of_us: int) -> Activity:
    n = pop.n
    window_days = (pop.last_active_us - pop.first_seen_us) / DAY_US
    extra = rng.poisson(0.35 * pop.engagement * window_days / 365)
    n_sess = np.maximum(1 + extra, pop.n_devices)
    owner = np.repeat(np.arange(n), n_sess)
    pos = _positions(n_sess)
    span = (pop.last_active_us - pop.first_seen_us)[owner]
    s_us = pop.first_seen_us[owner] + (rng.random(len(owner)) * span).astype(np.int64)
    # The first sessions visit each device once, so every device of a customer is seen.
    dev_pick = np.where(pos < pop.n_devices[owner], pos,
                        rng.integers(0, 1 << 30, len(owner)) % pop.n_devices[owner])
    s_dev = pop.device_offset[owner] + dev_pick

    # Signup happens during one of the customer's sessions; earlier events stay anonymous.
    signup_pick = _offsets(n_sess) + rng.integers(0, 1 << 30, n) % n_sess
    signup_us = np.where(pop.signed_up, s_us[signup_pick], np.iinfo(np.int64).max)
    signup_dev = s_dev[signup_pick]

    # Shared devices (family tablet, store kiosk): 2+ signed-up customers each log in on them.
    n_devices_total = int(pop.n_devices.sum())
    signed = np.flatnonzero(pop.signed_up & (signup_us < pop.last_active_us - SECOND_US * 60))
    n_shared = max(1, n // 250) if len(signed) >= 2 else 0
    sizes = 2 + rng.poisson(1.0, n_shared)
    sizes[: max(1, n_shared // 10)] += 8  # a few kiosks with many users
    sizes = np.minimum(sizes, max(2, len(signed) // max(1, n_shared)))
    members = rng.choice(signed, size=min(int(sizes.sum()), len(signed)), replace=False)
    shared_of = np.repeat(np.arange(n_shared), sizes)[: len(members)]
    m_span = pop.last_active_us[members] - signup_us[members]
    m_us = signup_us[members] + SECOND_US + (rng.random(len(members)) * (m_span - 2 * SECOND_US)
                                               ).astype(np.int64)

    # Recent abandoned carts, so cart-abandonment audiences have members at as_of.
    active = np.flatnonzero(~pop.churned)
    open_c = rng.choice(active, size=max(1, len(active) // 25), replace=False)
    open_us = as_of_us - (rng.uniform(300, 3 * 86_400, len(open_c)) * SECOND_US).astype(np.int64)
    open_dev = pop.device_offset[open_c] + rng.integers(0, 1 << 30, len(open_c)) % \
        pop.n_devices[open_c]

    session_customer = np.concatenate([owner, members, open_c])
    session_us = np.concatenate([s_us, m_us, open_us])
    session_device = np.concatenate([s_dev, n_devices_total + shared_of, open_dev])
    n_regular = len(owner) + len(members)
    open_flag = np.zeros(len(session_customer), dtype=bool)
    open_flag[n_regular:] = True
    S = len(session_customer)

    # The funnel. Affinity drives both adding to cart and completing checkout.
    aff = pop.buy_affinity[session_customer]
    pages = 1 + rng.poisson(0.3, S)
    viewed = rng.random(S) < 0.7
    added = viewed & (rng.random(S) < 0.3 + 0.4 * aff)
    checkout = added & (rng.random(S) < 0.7)
    completed = checkout & (rng.random(S) < aff)
    viewed |= open_flag
    added |= open_flag
    checkout &= ~open_flag | (rng.random(S) < 0.4)
    completed &= ~open_flag

    # Carts and their line items.
    cart_session = np.flatnonzero(added)
    n_items = 1 + rng.binomial(2, 0.35, len(cart_session))
    item_cart = np.repeat(np.arange(len(cart_session)), n_items)
    item_sku = rng.integers(0, len(PRODUCTS), len(item_cart))
    item_qty = 1 + rng.binomial(1, 0.2, len(item_cart))
    prices = np.array([p for _, _, p in PRODUCTS])
    revenue = np.bincount(item_cart, weights=prices[item_sku] * item_qty,
                          minlength=len(cart_session))
    cart_of_session = np.full(S, -1, dtype=np.int64)
    cart_of_session[cart_session] = np.arange(len(cart_session))
    order_of_session = np.full(S, -1, dtype=np.int64)
    order_sessions = np.flatnonzero(completed)
    order_of_session[order_sessions] = np.arange(len(order_sessions))

    # Funnel events: pages first, then viewed / added / checkout / completed in order.
    steps = viewed.astype(np.int64) + added + checkout + completed
    n_ev = pages + steps
    e_sess = np.repeat(np.arange(S), n_ev)
    e_pos = _positions(n_ev)
    e_pages = pages[e_sess]
    mobile = pop.device_mobile[np.minimum(session_device, n_devices_total - 1)][e_sess]
    mobile &= session_device[e_sess] < n_devices_total
    kind = np.where(e_pos < e_pages, np.where(mobile, SCREEN, PAGE), VIEWED + e_pos - e_pages)
    e_us = (session_us[e_sess] + e_pos * 40 * SECOND_US
            + rng.integers(0, 20 * SECOND_US, len(e_sess)))
    e_cust = session_customer[e_sess]
    funnel = {
        "customer": e_cust,
        "kind": kind,
        "ts": e_us,
        "device": session_device[e_sess],
        "cart": np.where(kind >= ADDED, cart_of_session[e_sess], -1),
        "order": np.where(kind == COMPLETED, order_of_session[e_sess], -1),
        "sku": np.where(kind == VIEWED, rng.integers(0, len(PRODUCTS), len(e_sess)), -1),
        "email_kind": np.zeros(len(e_sess), dtype=np.int64),
        "with_phone": np.zeros(len(e_sess), dtype=bool),
    }

    # Identify calls: one per device at its first visit (anonymous before signup), one at
    # signup with every trait, one carrying the secondary email, and some with placeholders.
    order_idx = np.lexsort((session_us[:n_regular], session_device[:n_regular]))
    first_of_dev = order_idx[np.r_[True, np.diff(session_device[:n_regular][order_idx]) != 0]]
    own = first_of_dev[session_device[first_of_dev] < n_devices_total]
    d_cust = session_customer[own]
    d_first_device = session_device[own] == pop.device_offset[d_cust]
    d_phone = pop.has_phone[d_cust] & (
        (d_first_device & ~pop.signed_up[d_cust]) | (rng.random(len(own)) < 0.3))
    su = np.flatnonzero(pop.signed_up)
    sec = np.flatnonzero(pop.has_secondary_email)
    sec_sess = rng.integers(0, 1 << 30, len(sec)) % n_sess[sec] + _offsets(n_sess)[sec]
    ph = rng.choice(n, size=max(1, n // 25), replace=False)
    ph_sess = rng.integers(0, 1 << 30, len(ph)) % n_sess[ph] + _offsets(n_sess)[ph]
    ident = _concat([
        # per own device, at its first session
        dict(customer=d_cust, ts=session_us[own] - SECOND_US, device=session_device[own],
             email_kind=EMAIL_PRIMARY, with_phone=d_phone),
        # per shared-device visit: the member logs in
        dict(customer=members, ts=m_us - SECOND_US, device=n_devices_total + shared_of,
             email_kind=EMAIL_PRIMARY, with_phone=False),
        # signup
        dict(customer=su, ts=signup_us[su] + SECOND_US, device=signup_dev[su],
             email_kind=EMAIL_PRIMARY, with_phone=pop.has_phone[su]),
        dict(customer=sec, ts=s_us[sec_sess] + 2 * SECOND_US, device=s_dev[sec_sess],
             email_kind=EMAIL_SECONDARY, with_phone=False),
        dict(customer=ph, ts=s_us[ph_sess] + 3 * SECOND_US, device=s_dev[ph_sess],
             email_kind=EMAIL_PLACEHOLDER, with_phone=False),
    ], kind=IDENTIFY)
    al = su[rng.random(len(su)) < 0.6]
    alias = _concat([dict(customer=al, ts=signup_us[al] + 2 * SECOND_US, device=signup_dev[al],
                          email_kind=0, with_phone=False)], kind=ALIAS)
    ev = {k: np.concatenate([funnel[k], ident[k], alias[k]]) for k in funnel}
    ev["user"] = pop.signed_up[ev["customer"]] & (ev["ts"] >= signup_us[ev["customer"]])
    # Aliases are sent by the app right after signup: they always carry the user_id.
    ev["user"] |= ev["kind"] == ALIAS
    ev["seq"] = np.arange(len(ev["kind"]), dtype=np.int64)
    return Activity(
        session_customer=session_customer, session_us=session_us, session_device=session_device,
        session_open_cart=open_flag, signup_us=signup_us,
        shared_members=np.stack([members, shared_of], axis=1), n_shared_devices=n_shared,
        cart_session=cart_session, cart_item_cart=item_cart, cart_item_sku=item_sku,
        cart_item_qty=item_qty, cart_revenue=np.round(revenue, 2),
        cart_completed=completed[cart_session], ev=ev,
    )


def _concat(parts: list[dict], kind: int) -> dict[str, np.ndarray]:
    cols: dict[str, list[np.ndarray]] = {}
    for part in parts:
        size = len(part["customer"])
        for key, value in part.items():
            cols.setdefault(key, []).append(np.broadcast_to(np.asarray(value), (size,)))
    out = {k: np.concatenate(v) for k, v in cols.items()}
    size = len(out["customer"])
    out["kind"] = np.full(size, kind)
    out["cart"] = np.full(size, -1)
    out["order"] = np.full(size, -1)
    out["sku"] = np.full(size, -1)
    return out
