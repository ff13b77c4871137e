"""The demo world's customers answering the journeys' messages about their carts.

The world's orders are drawn before any journey runs, so on its own a replay could only show
"no difference": nothing a message said would change what anyone did, and revenue per send
would be 0 by construction. During the replay, each cart message delivered makes its customer
check that cart out with a probability per channel (`ResponseModel`), after a delay drawn from
an exponential distribution. The checkout lands the way a storefront and its commerce system
would land it: an `Order Completed` track (cart_id, order_id, revenue, products) in raw.events
and the order in raw.orders. The journey sees the track like any other and exits the instance,
cancelling its later steps; the measurement models see the order and attribute it to the last
send before it. Held-out customers receive nothing, so they answer nothing: the lift the report
measures is this model's (the demo prints the rates), not a claim about real customers.

Draws are a pure function of (seed, idempotency key), so a replay answers the same whatever its
tick: the same seed gives the same world after the journeys too.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import duckdb

# From the checkout to its track and order landing (the world's orders land 2 s after it too).
LANDING_DELAY = timedelta(seconds=2)


@dataclass(frozen=True)
class ResponseModel:
    """How the demo's customers answer a delivered message about their open cart."""

    # Probability that a delivered message on the channel is followed by the cart's checkout.
    # Email and SMS cart reminders are commonly reported to recover a few to ten percent.
    recovery: dict[str, float] = field(default_factory=lambda: {"email": 0.08, "sms": 0.10})
    # Mean of the exponential delay between the message and the checkout.
    mean_delay: timedelta = timedelta(hours=3)

    def describe(self) -> str:
        rates = ", ".join(f"{c} {p:.0%}" for c, p in sorted(self.recovery.items()))
        hours = self.mean_delay.total_seconds() / 3600
        return f"checkout after a cart message: {rates}; mean delay {hours:g} h"


def _uniform(seed: int, key: str, salt: str) -> float:
    """A stable draw in [0, 1) for (seed, key, salt)."""
    digest = hashlib.sha256(f"{seed}:{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class Responder:
    """Lands the checkouts that the messages delivered since its last call earned.

    `respond(until)` reads the journey state (delivered sends of cart journeys, not held out)
    and lands each recovery whose moment is at or before `until`, the replay's end: a customer
    who would answer after the world's end has not answered yet.
    """

    def __init__(self, state: sqlite3.Connection, warehouse: duckdb.DuckDBPyConnection,
                 cart_journeys: set[str], *, seed: int,
                 model: ResponseModel | None = None) -> None:
        self.state = state
        self.warehouse = warehouse
        self.cart_journeys = cart_journeys
        self.seed = seed
        self.model = model or ResponseModel()
        self._since = datetime.min  # sends before it were all seen (ties are in _seen)
        self._seen: set[str] = set()
        self._recovered: set[str] = set()  # instances: a cart is checked out once
        self.landed = 0

    def respond(self, until: datetime) -> int:
        """Land the recoveries earned by sends not seen before; returns how many landed."""
        if not self.cart_journeys:
            return 0
        marks = ", ".join("?" for _ in self.cart_journeys)
        rows = self.state.execute(
            # The delivered attempt's time is the journey clock's (outbox bookkeeping is not).
            f"""select o.idempotency_key, o.instance_id, o.profile_id, o.channel, d.attempted_at
            from outbox o
            join instances i on i.instance_id = o.instance_id
            join deliveries d on d.idempotency_key = o.idempotency_key
                and d.status = 'delivered'
            where o.action = 'send' and not i.holdout and o.journey in ({marks})
              and d.attempted_at >= ?
            order by d.attempted_at, o.idempotency_key""",
            [*sorted(self.cart_journeys), self._since],
        ).fetchall()
        landed = 0
        for key, instance_id, profile_id, channel, sent_at in rows:
            if key in self._seen:
                continue
            self._seen.add(key)
            self._since = max(self._since, sent_at)
            rate = self.model.recovery.get(channel, 0.0)
            if instance_id in self._recovered or _uniform(self.seed, key, "answer") >= rate:
                continue
            # Inverse CDF of the exponential; at least a second after the message.
            wait = -math.log(1.0 - _uniform(self.seed, key, "delay"))
            at = sent_at + max(timedelta(seconds=1), self.model.mean_delay * wait)
            if at + LANDING_DELAY > until:
                continue
            if self._land(instance_id, profile_id, key, at):
                self._recovered.add(instance_id)
                landed += 1
        self.landed += landed
        return landed

    def _land(self, instance_id: str, profile_id: str | None, key: str, at: datetime) -> bool:
        instance = self.state.execute(
            """select entry_key, anonymous_id, trigger_message_id
            from instances where instance_id = ?""", [instance_id]).fetchone()
        lines = self.state.execute(
            "select sku, name, price, quantity from cart_lines where instance_id = ? "
            "order by sku", [instance_id]).fetchall()
        if instance is None or profile_id is None or not lines:
            return False  # nothing in the cart to buy, or nobody the shop could bill
        cart_id, anonymous_id, trigger_id = instance
        checked_out = self.warehouse.execute(
            """select count(*) from raw.events where event = 'Order Completed'
            and json_extract_string(properties, '$.cart_id') = ?""", [cart_id]).fetchone()
        if checked_out and checked_out[0]:
            return False  # the world's customer buys this cart anyway: no second checkout
        # The shop knows its customer at checkout: the profile's user id, email and phone.
        known = dict(self.warehouse.execute(
            """select identifier_type, min(identifier_value) from identity_map
            where profile_id = ? and identifier_type in ('user_id', 'email', 'phone')
            group by identifier_type""", [profile_id]).fetchall())
        user_id, email, phone = known.get("user_id"), known.get("email"), known.get("phone")
        if not (user_id or email or phone):
            return False
        trigger = self.warehouse.execute(
            "select json_extract_string(properties, '$.currency'), context from raw.events "
            "where message_id = ? limit 1", [trigger_id]).fetchone()
        currency = (trigger[0] if trigger else None) or "USD"
        context = trigger[1] if trigger else None
        products = [{"sku": s, "name": n, "price": p, "quantity": q} for s, n, p, q in lines]
        revenue = round(sum((p or 0.0) * q for _, _, p, q in lines), 2)
        ident = hashlib.sha256(f"{self.seed}:recovery:{key}".encode()).hexdigest()
        order_id = f"ord_r{ident[:12]}"
        properties = {"cart_id": cart_id, "order_id": order_id, "revenue": revenue,
                      "currency": currency, "products": products}
        landed_at = at + LANDING_DELAY
        self.warehouse.execute(
            """insert into raw.events (message_id, type, event, user_id, anonymous_id,
                previous_id, traits, properties, context, "timestamp", received_at)
            values (?, 'track', 'Order Completed', ?, ?, null, null, ?, ?, ?, ?)""",
            [f"recovery-{ident[:32]}", user_id, anonymous_id, json.dumps(properties), context,
             at, landed_at])
        self.warehouse.execute(
            "insert into raw.orders values (?, ?, ?, ?, ?, ?, 'completed', ?, ?)",
            [order_id, email, phone, user_id, revenue, currency, landed_at,
             json.dumps(products)])
        return True
