"""Helpers for the sync engine tests: audience tables shaped like customer_profiles, syncs."""

from __future__ import annotations

from typing import Any

import duckdb

from activations.config import SyncSpec, parse_syncs


def make_audience(
    con: duckdb.DuckDBPyConnection, rows: list[dict[str, Any]], name: str = "audience_test"
) -> None:
    """An audience table shaped like customer_profiles' columns (one row per member)."""
    con.execute(
        f"""create or replace table {name} (
            profile_id varchar, email varchar, phone varchar, first_name varchar,
            open_cart_items json, qualified_offer varchar,
            email_consent boolean, sms_consent boolean, ads_consent boolean)"""
    )
    for r in rows:
        con.execute(
            f"insert into {name} values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                r["profile_id"], r.get("email"), r.get("phone"), r.get("first_name"),
                r.get("open_cart_items"), r.get("qualified_offer"),
                r.get("email_consent", True), r.get("sms_consent", True),
                r.get("ads_consent", True),
            ],
        )


def member(i: int, **over: Any) -> dict[str, Any]:
    row = {
        "profile_id": f"p{i}",
        "email": f"user{i}@example.com",
        "first_name": f"Name{i}",
        "open_cart_items": '[{"sku": "s1", "name": "Shoe", "quantity": 1, "price": 9.5}]',
        "qualified_offer": "WELCOME10",
    }
    row.update(over)
    return row


def hook_sync(**over: Any) -> SyncSpec:
    doc: dict[str, Any] = {
        "name": "hook",
        "audience": "audience_test",
        "destination": {"kind": "webhook", "credentials": {"signing_secret": "HOOK_SECRET"}},
        "channel": "email",
        "mode": "mirror",
        "identifiers": {"email": "email"},
        "fields": {"first_name": "first_name"},
        "batch_size": 3,
        "max_attempts": 3,
        "retry": {"total": 2, "backoff_factor": 0.01, "backoff_jitter": 0.01},
    }
    doc.update(over)
    return parse_syncs({"syncs": [doc]})[0]
