"""Last-touch attribution on hand-computed cases: overlapping windows, several sends before one
order, the window's boundary, orders no send touched, refunds, sends that are not touches, and
copies in the feed. Real dbt on a real DuckDB file; the feed is written with headwater.activity.

Every time is relative to T, Monday 2026-10-12 09:00, so every order is in T's week.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from measurement_world import build, delivery, identify, order

from headwater import activity

pytestmark = pytest.mark.slow

T = datetime(2026, 10, 12, 9, 0, 0)
WEEK = date(2026, 10, 12)
DAY = timedelta(days=1)
HOUR = timedelta(hours=1)
USERS = ["a", "b", "c", "d", "e", "f", "g", "h"]

ORDERS = [
    # A: two sends before o_a1, both windows open (overlap): the latest (the journey step) wins.
    order("o_a1", "a", 100, T + 2 * DAY),
    # A: the sync's window closed at T+3d, the step's (sent T+1d) is open until T+4d.
    order("o_a2", "a", 40, T + 3.5 * DAY),
    # B: exactly at the window's end (inclusive), then one second past it.
    order("o_b1", "b", 30, T + 3 * DAY),
    order("o_b2", "b", 20, T + 3 * DAY + timedelta(seconds=1)),
    # C: refunded: attributed, but no conversion and no revenue.
    order("o_c1", "c", 80, T + HOUR, status="refunded"),
    # D: no send at all; a guest order of no profile (a placeholder email).
    order("o_d1", "d", 50, T),
    order("o_guest", None, 25, T),
    # E: one order before the send, one at the very instant of it: neither after the send.
    order("o_e1", "e", 15, T),
    order("o_e2", "e", 35, T + DAY),
    # F: only an ads audience add and a contact update: not touches.
    order("o_f1", "f", 45, T + HOUR),
    # G: the send was rejected: never reached them.
    order("o_g1", "g", 55, T + HOUR),
    # H: a list add and a journey message at the same instant: the message wins.
    order("o_h1", "h", 60, T + HOUR),
]


def _feed(profiles: dict[str, str], folder: Path) -> None:
    p = profiles
    rows = [
        delivery("s_a1", "winback_email", T, profile_id=p["a"]),
        # Journey deliveries keyed on the user id; the model resolves the profile.
        delivery("s_a2", "cart_abandonment.reminder", T + DAY, user_id="a",
                 destination="sendgrid"),
        delivery("s_b1", "cart_sms", T, profile_id=p["b"], channel="sms", destination="twilio"),
        delivery("s_c1", "winback_email", T, profile_id=p["c"]),
        # The same message delivered again (its first answer was lost): still one send.
        delivery("s_c1", "winback_email", T + 2 * HOUR, profile_id=p["c"], attempt=2),
        delivery("s_e1", "winback_email", T + DAY, profile_id=p["e"]),
        delivery("s_f1", "retargeting", T, profile_id=p["f"], channel="ads",
                 destination="meta", action="add"),
        delivery("s_f2", "contacts", T, profile_id=p["f"], destination="sendgrid",
                 action="update"),
        delivery("s_g1", "winback_email", T, profile_id=p["g"], status="rejected"),
        delivery("s_h1", "contacts", T, profile_id=p["h"], destination="sendgrid", action="add"),
        delivery("s_h2", "cart_abandonment.reminder", T, user_id="h", destination="sendgrid"),
    ]
    activity.append_deliveries(folder, rows)
    # A writer that crashed after appending appends the same rows again.
    activity.append_deliveries(folder, [rows[2]])


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("attribution")
    events = [identify(u, T - 30 * DAY) for u in USERS]
    con = build(tmp, events, ORDERS, _feed)
    yield con
    con.close()


def test_each_order_goes_to_the_latest_send_within_the_window(warehouse) -> None:
    rows = dict(warehouse.execute(
        "select order_id, coalesce(send_idempotency_key, '-') from attribution_orders"
    ).fetchall())
    assert rows == {
        "o_a1": "s_a2", "o_a2": "s_a2",
        "o_b1": "s_b1", "o_b2": "-",
        "o_c1": "s_c1",
        "o_d1": "-", "o_guest": "-",
        "o_e1": "-", "o_e2": "-",
        "o_f1": "-", "o_g1": "-",
        "o_h1": "s_h2",
    }


def test_refunds_stay_visible_at_zero_revenue(warehouse) -> None:
    row = warehouse.execute(
        "select is_attributed, is_conversion, order_total, revenue, hours_after_send "
        "from attribution_orders where order_id = 'o_c1'"
    ).fetchone()
    assert row == (True, False, 80, 0, 1.0)


def test_sends_are_delivered_messages_once_each(warehouse) -> None:
    sends = dict(warehouse.execute(
        "select idempotency_key, sent_at from attribution_sends").fetchall())
    # Not s_f1 (ads), s_f2 (update), s_g1 (rejected); s_c1 once, at its first delivery.
    assert set(sends) == {"s_a1", "s_a2", "s_b1", "s_c1", "s_e1", "s_h1", "s_h2"}
    assert sends["s_c1"] == T
    resolved = warehouse.execute(
        "select count(*) from attribution_sends where profile_id is null").fetchone()
    assert resolved == (0,)


def test_revenue_per_send_per_flow_and_week(warehouse) -> None:
    rows = warehouse.execute(
        """select flow, channel, destination, week, sends, attributed_orders, conversions,
                  refunded_or_cancelled_orders, revenue, revenue_per_send
           from measurement_flow_weekly order by flow"""
    ).fetchall()
    assert rows == [
        ("cart_abandonment.reminder", "email", "sendgrid", WEEK, 2, 3, 3, 0, 200.0, 100.0),
        ("cart_sms", "sms", "twilio", WEEK, 1, 1, 1, 0, 30.0, 30.0),
        ("contacts", "email", "sendgrid", WEEK, 1, 0, 0, 0, 0.0, 0.0),
        ("winback_email", "email", "webhook", WEEK, 3, 1, 0, 1, 0.0, 0.0),
    ]
    journey = warehouse.execute(
        "select source, journey, step from measurement_flow_weekly "
        "where flow = 'cart_abandonment.reminder'").fetchone()
    assert journey == ("journey", "cart_abandonment", "reminder")


def test_unattributed_revenue_is_the_rest(warehouse) -> None:
    row = warehouse.execute(
        """select orders, conversions, refunded_or_cancelled_orders, revenue,
                  attributed_conversions, attributed_revenue, unattributed_conversions,
                  unattributed_revenue
           from measurement_revenue_weekly where week = ?""", [WEEK]
    ).fetchone()
    # 12 orders, 11 count; attributed 100 + 40 + 30 + 60 (o_c1 refunded: 0).
    assert row == (12, 11, 1, 475.0, 4, 230.0, 7, 245.0)


def test_delivery_health_counts_attempts_and_success(warehouse) -> None:
    rows = {r[0]: r[1:] for r in warehouse.execute(
        """select flow, attempts, records, delivered, rejected, dead_letters, success_rate
           from measurement_delivery_health""").fetchall()}
    # winback_email: s_a1, s_c1 (twice), s_e1 delivered, s_g1 rejected.
    assert rows["winback_email"] == (5, 4, 4, 1, 0, 0.8)
    # The copy of s_b1 in the feed is dropped by staging.
    assert rows["cart_sms"] == (1, 1, 1, 0, 0, 1.0)


def test_freshness_of_every_input(warehouse) -> None:
    rows = {r[0]: r[1:] for r in warehouse.execute(
        "select input, latest_at, row_count from measurement_freshness").fetchall()}
    assert rows["raw.orders"] == (T + 3.5 * DAY, 12)
    assert rows["activity.deliveries"] == (T + DAY, 11)
    assert rows["activity.journey_events"] == (None, 0)
