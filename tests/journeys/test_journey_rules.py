"""Journey rules beyond cart abandonment: audience-entry triggers, late steps keep their
spacing, retries with backoff, dead letters, and the journal that explains each decision."""

from __future__ import annotations

from datetime import timedelta as td
from pathlib import Path
from typing import Any

from journey_testkit import Harness, harness

from activations.standins import Fault, FaultPlan

WINBACK = "/headwater/journeys/winback"


def _profile(pid: str) -> dict[str, Any]:
    return {"profile_id": pid, "email": f"{pid}@example.com", "first_name": pid.title(),
            "email_consent": True, "sms_consent": False, "ads_consent": False}


def _winback(h: Harness) -> dict[str, Any]:
    url = h.config_data["journeys"][0]["steps"][0]["send"]["destination"]["base_url"]
    return {"name": "winback", "trigger": {"audience": "audience_winback"},
            "steps": [
                {"name": "hello", "after": "0s", "send": {
                    "destination": {"kind": "webhook", "base_url": url,
                                    "credentials": {"signing_secret":
                                                    "HEADWATER_WEBHOOK_SECRET"},
                                    "options": {"path": WINBACK}},
                    "channel": "email", "identifiers": {"email": "email"},
                    "templates": {"subject": "We miss you, {{ first_name }}"}}},
                {"name": "again", "after": "2d", "send": {
                    "destination": {"kind": "webhook", "base_url": url,
                                    "credentials": {"signing_secret":
                                                    "HEADWATER_WEBHOOK_SECRET"},
                                    "options": {"path": WINBACK}},
                    "channel": "email", "identifiers": {"email": "email"}}},
            ]}


def test_audience_entry_starts_and_leaving_ends(tmp_path: Path) -> None:
    with harness(tmp_path) as h:
        people = [_profile(p) for p in ("p1", "p2", "p3")]
        h.publish(people, [], audiences={"audience_winback": ["p1"]})
        h.open(journeys=[_winback(h)])
        h.at(td(minutes=1))  # turning the journey on messages no one already in it
        assert h.emails(WINBACK) == []
        h.publish(people, [], audiences={"audience_winback": ["p1", "p2", "p3"]})
        h.at(td(minutes=2))
        assert sorted(r["fields"]["email"] for r in h.emails(WINBACK)) == [
            "p2@example.com", "p3@example.com"]
        h.publish(people, [], audiences={"audience_winback": ["p1", "p2"]})  # p3 left
        h.at(td(days=3))
        again = [r["fields"]["email"] for r in h.emails(WINBACK)][2:]
        assert again == ["p2@example.com"]
        assert ("exited", None, "left audience_winback") in {
            (e, s, r) for _, e, s, r in h.journal("winback")}


def test_late_steps_keep_their_spacing(tmp_path: Path) -> None:
    """The worker was down for 3 hours: the email goes now, the SMS 90 minutes later."""
    with harness(tmp_path) as h:
        h.publish([{**_profile("p1"), "phone": "+14155552671", "sms_consent": True}],
                  [("user_id", "u1", "p1")])
        h.open()
        h.track("Product Added", user_id="u1", cart_id="c1", sku="A", name="Hat", price=5)
        h.at(td(hours=3))
        assert len(h.emails("/headwater/journeys/cart-email")) == 1 and h.sms() == []
        h.at(td(hours=4, minutes=29))
        assert h.sms() == []
        h.at(td(hours=4, minutes=30))
        assert len(h.sms()) == 1


def test_transient_failures_retry_with_backoff_and_rejections_dead_letter(
    tmp_path: Path,
) -> None:
    with harness(tmp_path) as h:
        h.open()
        h.webhook.script(Fault("5xx", status=500), count=2)
        h.track("Signed Up", anonymous_id="a1", traits={"email": "one@example.com"})
        h.at(td(seconds=0))
        assert h.emails("/headwater/journeys/welcome") == []
        h.at(td(seconds=10))  # past the first backoffs: delivered, once
        assert len(h.emails("/headwater/journeys/welcome")) == 1
        statuses = [r[0] for r in h.fast.con.execute(
            "select status from deliveries order by rowid").fetchall()]
        assert statuses[-1] == "delivered" and "retry" in statuses
        # A vendor that refuses the record every time: dead after max_attempts (5).
        h.webhook.set_faults(FaultPlan(rate_reject=1.0, seed=3))
        h.track("Signed Up", anonymous_id="a2", traits={"email": "two@example.com"})
        for minutes in range(1, 40):
            h.at(td(minutes=minutes))
        row = h.fast.con.execute(
            "select status, attempts from outbox where step = 'welcome_email'"
            " and idempotency_key like 'welcome:%two@example.com%'").fetchone()
        assert row == ("dead", 5)
        assert any(e == "step_failed" for _, e, _, _ in h.journal("welcome"))
