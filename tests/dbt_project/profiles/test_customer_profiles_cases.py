"""customer_profiles and the segments on hand-written raw rows: each case is built to test one
rule (source priority, consent precedence, cart state, lifecycle), with values computed by hand.

Real dbt on a real DuckDB file; the raw tables are written the way a loader would.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.warehouse import create_raw_tables

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 11, 1, 12, 0, 0)
UPSTREAM_TESTS = [
    f"resource_type:test,path:models/{folder}"
    for folder in ("staging", "intermediate", "marts/identity")
]


def _t(days: float = 0, hours: float = 0, minutes: float = 0) -> datetime:
    """A time `days`/`hours`/`minutes` before AS_OF."""
    return AS_OF - timedelta(days=days, hours=hours, minutes=minutes)


_msg_counter = iter(range(1, 10_000))


def _event(
    type_: str,
    at: datetime,
    *,
    event: str | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    traits: dict[str, Any] | None = None,
    properties: dict[str, Any] | None = None,
) -> tuple:
    return (
        f"m{next(_msg_counter)}",
        type_,
        event,
        user_id,
        anonymous_id,
        None,
        json.dumps(traits) if traits is not None else None,
        json.dumps(properties) if properties is not None else None,
        json.dumps({}),
        at,
        at + timedelta(seconds=2),
    )


EVENTS = [
    # Ann (user u-ann): identify says "Annie" after the CRM said "Ann": the CRM wins.
    _event("identify", _t(40), user_id="u-ann", anonymous_id="a-ann",
           traits={"email": " Ann@ACME.io ", "first_name": "Annie", "phone": "+1 415 555 0101"}),
    # Her cart: two products in one event, then one more of the first as a single product.
    _event("track", _t(1, hours=2), event="Product Added", user_id="u-ann",
           properties={"cart_id": "k-ann", "products": [
               {"sku": "SKU-1", "name": "Mug", "price": 10, "quantity": 2},
               {"sku": "SKU-2", "name": "Tea", "price": 5, "quantity": 1}]}),
    _event("track", _t(1, hours=1), event="Product Added", user_id="u-ann",
           properties={"cart_id": "k-ann", "sku": "SKU-1", "name": "Mug", "price": 10,
                       "quantity": 1}),
    _event("page", _t(0, hours=3), anonymous_id="a-ann"),
    # Bob (u-bob): cart k-bob checked out by an Order Completed naming it: not open.
    _event("identify", _t(300), user_id="u-bob", traits={"email": "bob@acme.io"}),
    _event("track", _t(200), event="Product Added", user_id="u-bob",
           properties={"cart_id": "k-bob", "sku": "SKU-3", "name": "Pot", "price": 30}),
    _event("track", _t(200, hours=-1), event="Order Completed", user_id="u-bob",
           properties={"cart_id": "k-bob", "order_id": "o-bob-1", "revenue": 30}),
    # Cid: anonymous only, identifies with a placeholder email: never his email.
    _event("identify", _t(5), anonymous_id="a-cid", traits={"email": "test@test.com"}),
    _event("page", _t(2), anonymous_id="a-cid"),
    # Dee (u-dee): a cart touched 10 minutes ago (not abandoned yet) and an older cart that an
    # order placed after it closed (no cart_id on the order).
    _event("identify", _t(20), user_id="u-dee", traits={"email": "dee@acme.io"}),
    _event("track", _t(10), event="Product Added", user_id="u-dee",
           properties={"cart_id": "k-dee-old", "sku": "SKU-4", "name": "Pan", "price": 20}),
    _event("track", _t(0, minutes=10), event="Product Added", user_id="u-dee",
           properties={"cart_id": "k-dee-new", "sku": "SKU-5", "name": "Lid", "price": 7.5,
                       "quantity": 2}),
    # Eve (u-eve): adds then removes her only item: the cart is empty, not open.
    _event("identify", _t(20), user_id="u-eve", traits={"email": "eve@acme.io"}),
    _event("track", _t(3), event="Product Added", user_id="u-eve",
           properties={"cart_id": "k-eve", "sku": "SKU-6", "name": "Cup", "price": 4}),
    _event("track", _t(3, hours=-1), event="Product Removed", user_id="u-eve",
           properties={"cart_id": "k-eve", "sku": "SKU-6", "name": "Cup", "price": 4}),
    # An event after as_of is invisible to profiles pinned at as_of.
    _event("track", _t(-1), event="Product Added", user_id="u-eve",
           properties={"cart_id": "k-eve-future", "sku": "SKU-6", "name": "Cup", "price": 4}),
]

ORDERS = [
    # order_id, customer_email, customer_phone, user_id, total, currency, status, created_at
    ("o-ann-1", "ann@acme.io", None, "u-ann", 100.00, "USD", "completed", _t(12)),
    # A second email of Ann's, only on this order (joined through user_id).
    ("o-ann-2", "ann.work@acme.io", None, "u-ann", 50.50, "USD", "completed", _t(25)),
    ("o-ann-3", "ann@acme.io", None, "u-ann", 999.00, "USD", "cancelled", _t(3)),
    ("o-bob-1", "bob@acme.io", None, "u-bob", 30.00, "USD", "completed", _t(200, hours=-1)),
    ("o-dee-1", "dee@acme.io", None, "u-dee", 20.00, "USD", "completed", _t(9)),
    ("o-eve-1", "eve@acme.io", None, "u-eve", 80.00, "USD", "completed", _t(120)),
    ("o-eve-2", "eve@acme.io", None, "u-eve", 999.00, "USD", "completed", _t(-2)),
]

CRM = [
    ("c-ann", "ann@acme.io", "(415) 555-0101", "Ann", "Lee", "Gold", 1200, _t(100)),
    ("c-eve", "eve@acme.io", None, "Eve", "Moss", "bronze", 10, _t(100)),
]

CONSENT = [
    # Ann: email opt-in on her main email, opt-out on her work email: the opt-out wins.
    ("email", "ann@acme.io", "email", True, _t(30)),
    ("email", "Ann.Work@acme.io", "email", False, _t(29)),
    # Ann: SMS opt-in on her phone (written in national format): granted.
    ("phone", "(415) 555-0101", "sms", True, _t(30)),
    # Bob: email opt-out then opt-in again later: the latest row wins.
    ("email", "bob@acme.io", "email", False, _t(50)),
    ("email", "bob@acme.io", "email", True, _t(10)),
    # Bob: ads opt-in later revoked on his user_id.
    ("user_id", "u-bob", "ads", True, _t(50)),
    ("user_id", "u-bob", "ads", False, _t(5)),
    # Eve: an ads opt-in recorded after as_of does not count yet.
    ("email", "eve@acme.io", "ads", True, _t(-1)),
]


def _land(db: Path) -> None:
    con = duckdb.connect(str(db))
    create_raw_tables(con)
    con.executemany("insert into raw.events values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", EVENTS)
    con.executemany(
        "insert into raw.orders values (?, ?, ?, ?, ?, ?, ?, ?, '[]')", ORDERS
    )
    con.executemany("insert into raw.crm_contacts values (?, ?, ?, ?, ?, ?, ?, ?)", CRM)
    con.executemany("insert into raw.consent values (?, ?, ?, ?, ?)", CONSENT)
    con.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    tmp = tmp_path_factory.mktemp("profile_cases")
    db = tmp / "wh.duckdb"
    _land(db)
    run_dbt(
        "build",
        [
            "--select", "+customer_profiles", "+tag:segment", "+propensity_evaluation",
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
    con = duckdb.connect(str(db))
    yield con
    con.close()


def _profile(con: duckdb.DuckDBPyConnection, identifier_type: str, value: str) -> dict[str, Any]:
    cur = con.execute(
        """select p.* from customer_profiles p
           join identity_map m on m.profile_id = p.profile_id
           where m.identifier_type = ? and m.identifier_value = ?""",
        [identifier_type, value],
    )
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    assert len(rows) == 1, f"{identifier_type}={value}: {len(rows)} profiles"
    return dict(zip(names, rows[0], strict=True))


def _members(con: duckdb.DuckDBPyConnection, segment: str) -> set[str]:
    return {r[0] for r in con.execute(f"select profile_id from {segment}").fetchall()}


def test_one_row_per_profile(warehouse: duckdb.DuckDBPyConnection) -> None:
    profiles, distinct_ids = warehouse.execute(
        "select count(*), count(distinct profile_id) from customer_profiles"
    ).fetchone()
    assert profiles == distinct_ids
    assert profiles == warehouse.execute(
        "select count(distinct profile_id) from identity_map"
    ).fetchone()[0]


def test_crm_traits_win_and_contact_points_are_identifiers(
    warehouse: duckdb.DuckDBPyConnection,
) -> None:
    ann = _profile(warehouse, "user_id", "u-ann")
    assert ann["first_name"] == "Ann"  # CRM beats the later identify's "Annie"
    assert ann["last_name"] == "Lee"
    assert ann["email"] == "ann@acme.io"
    assert ann["email_source"] == "crm"
    assert ann["phone"] == "+14155550101"
    assert ann["loyalty_tier"] == "gold"
    assert ann["loyalty_points"] == 1200
    bob = _profile(warehouse, "user_id", "u-bob")
    assert bob["email"] == "bob@acme.io"
    assert bob["email_source"] == "events"
    assert bob["loyalty_tier"] is None
    cid = _profile(warehouse, "anonymous_id", "a-cid")
    assert cid["email"] is None  # the placeholder is never chosen


def test_order_traits(warehouse: duckdb.DuckDBPyConnection) -> None:
    ann = _profile(warehouse, "user_id", "u-ann")
    # Both emails' orders count; the cancelled one does not.
    assert ann["order_count"] == 2
    assert float(ann["lifetime_value"]) == pytest.approx(150.50)
    assert float(ann["average_order_value"]) == pytest.approx(75.25)
    assert ann["first_order_at"] == _t(25)
    assert ann["last_order_at"] == _t(12)
    assert ann["last_seen_at"] == _t(0, hours=3)
    eve = _profile(warehouse, "user_id", "u-eve")
    # The order after as_of is not counted.
    assert eve["order_count"] == 1
    assert float(eve["lifetime_value"]) == pytest.approx(80.0)
    cid = _profile(warehouse, "anonymous_id", "a-cid")
    assert cid["order_count"] == 0
    assert float(cid["lifetime_value"]) == 0
    assert cid["average_order_value"] is None


def test_lifecycle_stages(warehouse: duckdb.DuckDBPyConnection) -> None:
    stages = {
        "u-ann": "new",  # first order 25 days ago
        "u-dee": "new",
        "u-eve": "at-risk",  # last order 120 days ago
        "u-bob": "lapsed",  # 200 days
    }
    for user, stage in stages.items():
        assert _profile(warehouse, "user_id", user)["lifecycle_stage"] == stage, user
    assert _profile(warehouse, "anonymous_id", "a-cid")["lifecycle_stage"] == "prospect"


def test_open_cart(warehouse: duckdb.DuckDBPyConnection) -> None:
    ann = _profile(warehouse, "user_id", "u-ann")
    assert ann["open_cart_id"] == "k-ann"
    items = json.loads(ann["open_cart_items"])
    assert items == [
        {"sku": "SKU-1", "name": "Mug", "quantity": 3, "price": 10},
        {"sku": "SKU-2", "name": "Tea", "quantity": 1, "price": 5},
    ]
    assert float(ann["open_cart_value"]) == pytest.approx(35.0)
    assert ann["cart_updated_at"] == _t(1, hours=1)
    # Bob's cart was ordered; Eve's was emptied; Dee's old cart was followed by an order.
    assert _profile(warehouse, "user_id", "u-bob")["open_cart_id"] is None
    assert _profile(warehouse, "user_id", "u-eve")["open_cart_id"] is None
    dee = _profile(warehouse, "user_id", "u-dee")
    assert dee["open_cart_id"] == "k-dee-new"
    assert float(dee["open_cart_value"]) == pytest.approx(15.0)
    reasons = dict(
        warehouse.execute("select cart_id, closed_reason from int_profile_carts").fetchall()
    )
    assert reasons == {
        "k-ann": None,
        "k-bob": "ordered_this_cart",
        "k-dee-old": "ordered_after",
        "k-dee-new": None,
        "k-eve": "emptied",
    }


def test_consent(warehouse: duckdb.DuckDBPyConnection) -> None:
    ann = _profile(warehouse, "user_id", "u-ann")
    # The opt-out on her secondary email wins over the opt-in on her main one.
    assert ann["email_consent"] is False
    assert ann["sms_consent"] is True
    assert ann["ads_consent"] is False  # no record: opt-in required
    bob = _profile(warehouse, "user_id", "u-bob")
    assert bob["email_consent"] is True  # the latest row (opt-in again) wins
    assert bob["ads_consent"] is False
    dee = _profile(warehouse, "user_id", "u-dee")
    # No email record: allowed by default; no sms record: not allowed.
    assert (dee["email_consent"], dee["email_consent_recorded"]) == (True, False)
    assert dee["sms_consent"] is False
    eve = _profile(warehouse, "user_id", "u-eve")
    assert (eve["ads_consent"], eve["ads_consent_recorded"]) == (False, False)


def test_qualified_offer(warehouse: duckdb.DuckDBPyConnection) -> None:
    assert _profile(warehouse, "user_id", "u-ann")["qualified_offer"] == "GOLD20"
    assert _profile(warehouse, "user_id", "u-eve")["qualified_offer"] == "BRONZE10"
    assert _profile(warehouse, "user_id", "u-bob")["qualified_offer"] == "WELCOME10"


def test_segments(warehouse: duckdb.DuckDBPyConnection) -> None:
    def pid(user: str) -> str:
        return _profile(warehouse, "user_id", user)["profile_id"]

    ann, bob, dee, eve = pid("u-ann"), pid("u-bob"), pid("u-dee"), pid("u-eve")
    # Dee's cart changed 10 minutes ago: not abandoned yet.
    assert _members(warehouse, "cart_abandoners") == {ann}
    assert _members(warehouse, "gold_tier") == {ann}
    assert _members(warehouse, "purchased_recently") == {ann, dee}
    assert _members(warehouse, "lapsed_customers") == {bob}
    assert _members(warehouse, "sms_reachable") == {ann}
    assert _members(warehouse, "ads_reachable") == set()
    # Dee and Eve: no email record (allowed); Bob opted in again; Ann opted out.
    assert _members(warehouse, "email_reachable") == {bob, dee, eve}
    # Top 10% of four customers by lifetime value: Ann (150.50).
    assert _members(warehouse, "high_value") == {ann}
    for segment in ("likely_to_purchase", "churn_risk_high"):
        assert _members(warehouse, segment) <= set(
            r[0] for r in warehouse.execute("select profile_id from customer_profiles").fetchall()
        )
