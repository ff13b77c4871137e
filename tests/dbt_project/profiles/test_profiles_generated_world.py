"""customer_profiles on a generated world, checked against values recomputed here in Python from
the staging rows and identity_map (an independent implementation of the documented rules).

Real dbt on a real DuckDB file, world from the project's own generator.
"""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb
import pytest

from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.demo.world import generate_world

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 11, 1, 12, 0, 0)
UPSTREAM_TESTS = [
    f"resource_type:test,path:models/{folder}"
    for folder in ("staging", "intermediate", "marts/identity")
]
EXCLUDED_STATUSES = {"cancelled", "canceled", "refunded", "failed", "voided"}
CONSENT_WITHOUT_RECORD = {"email": True, "sms": False, "ads": False}


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    tmp = tmp_path_factory.mktemp("profiles_world")
    db = tmp / "wh.duckdb"
    world = duckdb.connect(str(db))
    generate_world(world, customers=600, seed=23, as_of=AS_OF)
    world.close()
    run_dbt(
        "build",
        [
            "--select", "+customer_profiles", "+tag:segment",
            "--indirect-selection", "buildable",
            # Upstream parts' tests run in their own suites; here only ours.
            "--exclude", *UPSTREAM_TESTS,
            "--target-path", str(tmp / "target"),
            "--log-path", str(tmp / "logs"),
            "--vars", f"{{as_of: '{AS_OF.isoformat(sep=' ')}'}}",
        ],
        Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)}),
    )
    # dbt-duckdb keeps its connection open in this process: open with the same configuration.
    connection = duckdb.connect(str(db))
    yield connection
    connection.close()


def _rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def _identity(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], str]:
    return {
        (t, v): p
        for t, v, p in con.execute(
            "select identifier_type, identifier_value, profile_id from identity_map"
        ).fetchall()
    }


def _profiles(con: duckdb.DuckDBPyConnection) -> dict[str, dict[str, Any]]:
    return {r["profile_id"]: r for r in _rows(con, "select * from customer_profiles")}


def test_lifetime_value_recomputed_from_orders(con: duckdb.DuckDBPyConnection) -> None:
    ids = _identity(con)
    expected_ltv: dict[str, Decimal] = defaultdict(Decimal)
    expected_count: dict[str, int] = defaultdict(int)
    for o in _rows(con, "select * from stg_orders"):
        if o["ordered_at"] > AS_OF or (o["status"] or "") in EXCLUDED_STATUSES:
            continue
        profile = (
            ids.get(("user_id", o["user_id"]))
            or ids.get(("email", o["email"]))
            or ids.get(("phone", o["phone"]))
        )
        if profile:
            expected_ltv[profile] += o["total"]
            expected_count[profile] += 1
    profiles = _profiles(con)
    assert sum(expected_count.values()) > 100, "the world should have orders to check"
    for pid, p in profiles.items():
        assert p["order_count"] == expected_count.get(pid, 0), pid
        assert p["lifetime_value"] == expected_ltv.get(pid, Decimal(0)), pid


def test_consent_recomputed(con: duckdb.DuckDBPyConnection) -> None:
    ids = _identity(con)
    latest: dict[tuple[str, str, str], tuple[datetime, bool]] = {}
    for r in _rows(con, "select * from stg_consent"):
        if r["recorded_at"] > AS_OF:
            continue
        key = (r["identifier_type"], r["identifier_value"], r["channel"])
        # Latest wins; at the same instant the opt-out wins.
        candidate = (r["recorded_at"], r["granted"])
        if key not in latest or (candidate[0], not candidate[1]) > (
            latest[key][0], not latest[key][1]
        ):
            latest[key] = candidate
    per_profile: dict[tuple[str, str], list[bool]] = defaultdict(list)
    for (t, v, channel), (_, granted) in latest.items():
        profile = ids.get((t, v))
        if profile:
            per_profile[(profile, channel)].append(granted)
    profiles = _profiles(con)
    mixed = 0
    for pid, p in profiles.items():
        for channel, default in CONSENT_WITHOUT_RECORD.items():
            states = per_profile.get((pid, channel))
            expected = all(states) if states else default
            assert p[f"{channel}_consent"] is expected, (pid, channel, states)
            mixed += bool(states) and len(set(states)) > 1
    # The rule "an opt-out on any identifier wins" must have been exercised.
    assert mixed > 0


def _cart_items(con: duckdb.DuckDBPyConnection, cart_id: str) -> dict[str, int]:
    quantities: dict[str, int] = defaultdict(int)
    for r in _rows(
        con,
        f"select event_name, products, properties from stg_events where cart_id = '{cart_id}' "
        f"and event_name in ('Product Added', 'Product Removed') "
        f"and event_at <= '{AS_OF.isoformat(sep=' ')}'",
    ):
        sign = -1 if r["event_name"] == "Product Removed" else 1
        items = json.loads(r["products"]) if r["products"] else [json.loads(r["properties"])]
        for item in items:
            sku = item.get("sku") or item.get("product_id")
            quantities[sku] += sign * int(item.get("quantity") or 1)
    return {sku: q for sku, q in quantities.items() if q > 0}


def test_open_cart_items_match_product_added_events(con: duckdb.DuckDBPyConnection) -> None:
    with_cart = [p for p in _profiles(con).values() if p["open_cart_id"]]
    assert len(with_cart) > 10
    for p in with_cart:
        items = json.loads(p["open_cart_items"])
        assert {i["sku"]: i["quantity"] for i in items} == _cart_items(con, p["open_cart_id"])
        value = sum(Decimal(str(i["price"] or 0)) * i["quantity"] for i in items)
        assert p["open_cart_value"] == value.quantize(Decimal("0.01"))
        # Open: no order names the cart, none was placed after its last change.
        named = con.execute(
            "select count(*) from stg_orders where cart_id = ?", [p["open_cart_id"]]
        ).fetchone()[0]
        assert named == 0
        assert p["last_order_at"] is None or p["last_order_at"] < p["cart_updated_at"]


def test_contact_points_belong_to_the_profile(con: duckdb.DuckDBPyConnection) -> None:
    ids = _identity(con)
    # The generator's own list of the placeholders it planted (ground truth, not a model).
    placeholders = {
        r[0]
        for r in con.execute(
            "select normalized_value from demo_truth.placeholders "
            "where normalized_value is not null"
        ).fetchall()
    }
    assert placeholders
    for pid, p in _profiles(con).items():
        for kind in ("email", "phone"):
            if p[kind] is not None:
                assert ids.get((kind, p[kind])) == pid
                assert p[kind] not in placeholders


def test_segments_are_consistent_with_profiles(con: duckdb.DuckDBPyConnection) -> None:
    profiles = _profiles(con)

    def members(name: str) -> set[str]:
        return {r[0] for r in con.execute(f"select profile_id from {name}").fetchall()}

    assert members("gold_tier") == {
        pid for pid, p in profiles.items() if p["loyalty_tier"] in ("gold", "platinum")
    }
    assert members("sms_reachable") == {
        pid for pid, p in profiles.items() if p["phone"] and p["sms_consent"]
    }
    assert members("lapsed_customers") == {
        pid for pid, p in profiles.items() if p["lifecycle_stage"] == "lapsed"
    }
    abandoners = members("cart_abandoners")
    assert abandoners and abandoners <= {pid for pid, p in profiles.items() if p["open_cart_id"]}
