"""Sending on a thread per step, as the long-lived worker does (journeys/dispatch.py): a
destination that makes us wait holds up only its own lane, never the step, and an exit that
lands while its instance's send is still queued keeps that send from going out."""

from __future__ import annotations

from datetime import timedelta as td
from pathlib import Path

from journey_testkit import T0, Harness, harness

from activations.standins import Fault

EMAIL = "/headwater/journeys/cart-email"
PEOPLE = [
    {"profile_id": f"p_{n}", "email": f"{n}@example.com", "first_name": n.title(),
     "email_consent": True, "sms_consent": True, "ads_consent": True}
    for n in ("alice", "bob")
]
IDS = [(t, v, f"p_{n}") for n in ("alice", "bob")
       for t, v in (("user_id", f"u_{n}"), ("email", f"{n}@example.com"))]


def _cart(h: Harness, person: str, cart: str, minutes: float) -> None:
    h.track("Product Added", at=T0 + td(minutes=minutes), user_id=f"u_{person}", cart_id=cart,
            sku="A", name="Item A", price=10.0, quantity=1)


def _outbox(h: Harness) -> dict[str, str]:
    assert h.fast is not None
    return dict(h.fast.con.execute(
        "select instance_id, status from outbox"
        " where journey = 'cart_abandonment' and step = 'email'").fetchall())


def test_a_throttled_destination_holds_up_neither_the_steps_nor_an_exit(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        h.publish(PEOPLE, IDS)
        fast = h.open(background_dispatch=True)
        # Alice's email is throttled: the HTTP layer waits out Retry-After on the lane.
        h.webhook.script(Fault("429", retry_after=3), count=1)
        _cart(h, "alice", "c1", 0)
        _cart(h, "bob", "c2", 1)
        h.at(td(minutes=30, seconds=30))  # Alice's email is due and goes to the lane
        h.at(td(minutes=31, seconds=30))  # Bob's queues behind her throttled request
        h.track("Order Completed", at=T0 + td(minutes=31, seconds=40), user_id="u_bob",
                cart_id="c2", order_id="o2", revenue=10)
        h.at(td(minutes=31, seconds=45))  # Bob checks out while Alice's request still waits
        # Every step returned while the request waited out its Retry-After: nothing is stored
        # yet, and Bob's exit is already decided.
        assert h.emails(EMAIL) == []
        assert [e for _, e, _, _ in h.journal() if e == "exited"] == ["exited"]
        assert set(_outbox(h).values()) == {"pending"}
        fast.finish()
        assert [m["fields"]["email"] for m in h.emails(EMAIL)] == ["alice@example.com"]
        statuses = _outbox(h)
        assert sorted(statuses.values()) == ["cancelled", "delivered"]
        bob = next(i for i, s in statuses.items() if s == "cancelled")
        assert bob.startswith("cart_abandonment:c2")
        assert (bob, "step_cancelled", "email") in [r[:3] for r in h.journal()]


def test_answers_are_recorded_by_the_next_step(tmp_path: Path) -> None:
    """A lane gives answers back; the stepping thread records them with its next commit."""
    with harness(tmp_path) as h:
        h.publish(PEOPLE, IDS)
        fast = h.open(background_dispatch=True)
        _cart(h, "alice", "c1", 0)
        h.at(td(minutes=31))
        fast.finish()
        assert list(_outbox(h).values()) == ["delivered"]
        assert [e for _, e, _, _ in h.journal()][-1] == "step_sent"
