"""A due step's decisions: each instance's context (its profile, its cart, the journey's
fields), whether the step's condition holds, and what blocks the step (holdout, condition,
consent, identifiers). journeys/engine.py plans with these and records the outcome.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from activations.destinations.base import Channel
from journeys.config import Journey, JourneyConfigError, Step
from journeys.dispatch import StepClient
from journeys.instances import Instance

# Consent of subjects the warehouse does not know yet: dbt's `consent_without_record` default
# (email under opt-out rules; SMS and ads need an explicit opt-in).
CONSENT_WITHOUT_PROFILE = {"email": True, "sms": False, "ads": False, "none": True}


def step_context(
    inst: Instance, journey: Journey, step: Step, profile: Mapping[str, Any] | None,
    columns: tuple[str, ...], lines: Mapping[str, list[Any]],
) -> dict[str, Any]:
    """What conditions and templates read: the profile's columns (None when unknown), the
    instance's identifiers where the profile has none, the cart's lines, the journey's fields;
    `_profile` is the profile row itself."""
    ctx: dict[str, Any] = {c: None for c in columns}
    if profile:
        ctx.update(profile)
    for kind in ("email", "phone", "first_name"):
        ctx[kind] = ctx.get(kind) or getattr(inst, kind)
    items = [{"sku": sku, "name": v[0], "price": v[1], "quantity": v[2]}
             for sku, v in sorted(lines.items())]
    ctx.update(
        cart_items=items,
        cart_item_count=sum(i["quantity"] for i in items),
        cart_value=round(sum(i["quantity"] * (i["price"] or 0) for i in items), 2),
        journey=journey.name, step=step.name, instance_id=inst.instance_id,
        entry_key=inst.entry_key, entered_at=inst.entered_at, triggered_at=inst.triggered_at,
        profile_id=inst.profile_id, _profile=profile,
    )
    return ctx


def step_conditions(
    con: duckdb.DuckDBPyConnection, journey: Journey, step: Step,
    contexts: list[dict[str, Any]],
) -> list[bool]:
    """The step's SQL condition on each context, in one query over all of them."""
    if not step.condition:
        return [True] * len(contexts)
    rows = [{k: _jsonable_scalar(v) for k, v in c.items() if not k.startswith("_")
             and k != "cart_items"} for c in contexts]
    table = pa.Table.from_pylist(rows)
    try:
        con.register("ctx", table)
        got = con.execute(f"select coalesce(({step.condition}), false) from ctx").fetchall()
    except duckdb.Error as exc:
        raise JourneyConfigError(
            f"journey {journey.name}, step {step.name}: condition {step.condition!r} "
            f"failed: {exc}. Conditions read customer_profiles columns and cart_item_count,"
            " cart_value, entered_at, triggered_at."
        ) from None
    finally:
        con.unregister("ctx")
    return [bool(r[0]) for r in got]


def blocked(inst: Instance, step: Step, client: StepClient, ctx: Mapping[str, Any],
            condition_ok: bool) -> tuple[str, str] | None:
    """Why the step is not taken for this instance (the journal event and the reason), or
    None: holdout, then the condition, then consent on the step's channel, then identifiers."""
    if inst.holdout:
        return "step_held_out", "holdout"
    if not condition_ok:
        return "step_skipped", f"condition not met: {step.condition}"
    channel = client.channel
    if channel != Channel.NONE:
        granted = ctx.get(f"{channel.value}_consent")
        if granted is None:
            granted = ctx.get("_profile") is None and CONSENT_WITHOUT_PROFILE[channel.value]
        if not granted:
            return "step_skipped", f"no {channel.value} consent"
    missing = client.missing_identifier(ctx)
    if missing:
        return "step_skipped", missing
    return None


def _jsonable_scalar(value: Any) -> Any:
    if isinstance(value, list | dict):
        return orjson.dumps(value, default=str).decode()
    return value
