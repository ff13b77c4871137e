"""What the fast path works on: a journey instance, the event that moves it, and what a step did.

Plain data and the rules that read only it (an instance's memberships, its holdout, its cart
lines); journeys/engine.py owns the instances and decides with these.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson

from activations.caps import cap_subject
from journeys.config import Journey
from journeys.profiles import event_identifiers

# Cart events and the sign of their quantities (the same rule as dbt's int_profile_carts).
CART_EVENTS = {"Product Added": 1, "Product Removed": -1}


@dataclass
class Instance:
    instance_id: str
    journey: str
    entry_key: str
    identifier_type: str | None
    identifier_value: str | None
    profile_id: str | None
    user_id: str | None
    anonymous_id: str | None
    email: str | None
    phone: str | None
    first_name: str | None
    holdout: bool
    status: str
    entered_at: datetime
    triggered_at: datetime
    trigger_message_id: str | None
    trigger_received_at: datetime | None
    next_step: int
    next_due_at: datetime | None
    memberships: str | None
    ended_at: datetime | None
    end_reason: str | None
    updated_at: datetime


INSTANCE_COLUMNS = tuple(f.name for f in fields(Instance))
# A row for executemany in one C call (a generator over the columns was ~0.1 ms per event).
instance_row = operator.attrgetter(*INSTANCE_COLUMNS)


@dataclass
class Event:
    message_id: str
    name: str | None
    at: datetime
    received_at: datetime
    identifiers: dict[str, str | None]
    first_name: str | None
    properties: dict[str, Any]


def parse_event(row: Mapping[str, Any], default_region: str) -> Event | None:
    """A landed message as the fast path reads it; None for anything but a named track call."""
    if row.get("type") != "track" or not row.get("event"):
        return None
    traits = _obj(row.get("traits"))
    context = _obj(row.get("context"))
    raw_traits = context.get("traits")
    ctx_traits: dict[str, Any] = raw_traits if isinstance(raw_traits, dict) else {}
    received = row["received_at"]
    at = row.get("timestamp") or received
    return Event(
        message_id=str(row.get("message_id")),
        name=row.get("event"),
        at=min(at, received),  # a client clock in the future cannot delay the journey
        received_at=received,
        identifiers=event_identifiers(row.get("user_id"), row.get("anonymous_id"), traits,
                                      ctx_traits, default_region),
        first_name=traits.get("first_name") or ctx_traits.get("first_name"),
        properties=_obj(row.get("properties")),
    )


@dataclass
class StepResult:
    """What one step did (the Dagster sensor reports these as metadata)."""

    events: int = 0
    entered: int = 0
    restarted: int = 0
    exited: int = 0
    planned: int = 0
    skipped: int = 0
    held_out: int = 0
    capped: int = 0
    cancelled: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    seconds: float = 0.0
    watermark: str | None = None

    def add(self, other: StepResult) -> None:
        for f in fields(self):
            if isinstance(getattr(self, f.name), int):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        self.seconds += other.seconds
        self.watermark = other.watermark or self.watermark

    @property
    def active(self) -> bool:
        return bool(self.events or self.planned or self.sent or self.failed or self.cancelled
                    or self.exited or self.skipped or self.held_out or self.capped)


def members(inst: Instance) -> list[str]:
    """The audience steps the instance's subject was added to (removed when it ends)."""
    return [m for m in (inst.memberships or "").split(",") if m]


def in_holdout(journey: Journey, subject: tuple[str, str]) -> bool:
    """A stable hash of (journey, subject): the same person is always in or out."""
    if journey.holdout_percent <= 0:
        return False
    digest = hashlib.sha256(f"{journey.name}:{subject[0]}:{subject[1]}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % 10_000 < journey.holdout_percent * 100


def instance_cap_subject(inst: Instance) -> str:
    """Whom a frequency cap counts the instance's sends against."""
    return cap_subject(inst.profile_id) if inst.profile_id else (
        f"{inst.identifier_type}:{inst.identifier_value}")


def fold_cart(lines: dict[str, list[Any]], event: Event) -> None:
    """Apply a cart event to an instance's lines (sku -> [name, price, quantity]). Same rule as
    int_profile_carts: `products[]` lines, else the event's own product."""
    sign = CART_EVENTS[event.name or ""]
    products = event.properties.get("products")
    items = products if isinstance(products, list) else [event.properties]
    for item in items:
        if not isinstance(item, dict):
            continue
        sku = item.get("sku") or item.get("product_id")
        if sku is None:
            continue
        qty = int(item.get("quantity") or 1) * sign
        name, price, have = lines.get(str(sku), [None, None, 0])
        lines[str(sku)] = [item.get("name") or name, _num(item.get("price"), price), have + qty]
    for sku in [s for s, v in lines.items() if v[2] <= 0]:
        del lines[sku]


def _obj(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _num(value: Any, fallback: float | None) -> float | None:
    try:
        return float(value) if value is not None else fallback
    except (TypeError, ValueError):
        return fallback
