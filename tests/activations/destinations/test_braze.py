"""Braze client against the Braze stand-in (real HTTP on 127.0.0.1, stateful users)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activations.destinations.base import (
    Action,
    DestinationAuthError,
    DestinationConfig,
    Outcome,
    Record,
    TransientDestinationError,
)
from activations.destinations.braze import BrazeDestination
from activations.http import HttpClient, HttpSettings
from activations.standins.braze import BrazeConfig, BrazeStandin
from activations.standins.faults import Fault, FaultPlan

KEY = BrazeConfig().api_key
ATTR = "headwater_audiences"


def fast_http(retries: int = 2) -> HttpClient:
    return HttpClient(HttpSettings(total_retries=retries, backoff_factor=0.0,
                                   backoff_jitter=0.0, retry_after_max=1))


@pytest.fixture
def braze() -> Iterator[BrazeStandin]:
    with BrazeStandin() as standin:
        yield standin


def make(url: str, retries: int = 2, key: str = KEY, **opts: Any) -> BrazeDestination:
    options = {"audience": "cart_abandoners", **opts}
    return BrazeDestination(DestinationConfig("braze", url, {"api_key": key}, options),
                            fast_http(retries))


def member(n: int, action: Action = Action.ADD, **extra: Any) -> Record:
    fields = {"external_id": f"u{n}", "email": f" User{n}@Example.com ", "first_name": "Ann",
              **extra}
    return Record(f"p{n}", action, fields, f"k{n}-{action}")


def test_add_sets_membership_and_standard_fields(braze: BrazeStandin) -> None:
    results = make(braze.url).send_batch([member(1, loyalty_tier="gold"), member(2)])
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert braze.members(ATTR, "cart_abandoners") == {"u1", "u2"}
    user = braze.users()["u1"]
    assert user["email"] == "user1@example.com" and user["first_name"] == "Ann"
    assert user["loyalty_tier"] == "gold"


def test_remove_is_an_attribute_remove_not_a_delete(braze: BrazeStandin) -> None:
    dest = make(braze.url)
    dest.send_batch([member(1), member(2)])
    results = dest.send_batch([member(1, Action.REMOVE)])
    assert results[0].outcome is Outcome.DELIVERED
    assert braze.members(ATTR, "cart_abandoners") == {"u2"}
    assert "u1" in braze.users()  # the user still exists
    assert all(r.path == "/users/track" for r in braze.request_log())


def test_remove_of_unknown_user_creates_nobody(braze: BrazeStandin) -> None:
    make(braze.url).send_batch([member(9, Action.REMOVE)])
    assert braze.users() == {}


def test_send_records_an_event_with_properties(braze: BrazeStandin) -> None:
    rec = Record("p1", Action.SEND, {"external_id": "u1", "event_name": "cart_reminder",
                                     "cart_id": "c-7", "time": "2026-07-01T10:00:00+00:00"}, "k")
    assert make(braze.url).send_batch([rec])[0].outcome is Outcome.DELIVERED
    [event] = braze.events()
    assert event["name"] == "cart_reminder" and event["properties"] == {"cart_id": "c-7"}


@pytest.mark.parametrize("size", [75, 76, 160], ids=["exactly_75", "76_splits", "160_splits"])
def test_batches_split_at_75_combined(braze: BrazeStandin, size: int) -> None:
    results = make(braze.url).send_batch([member(i) for i in range(size)])
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert len(braze.request_log()) == -(-size // 75)
    assert len(braze.members(ATTR, "cart_abandoners")) == size


def test_indexed_non_fatal_error_rejects_only_that_record(braze: BrazeStandin) -> None:
    braze.set_faults(FaultPlan(reject_ids=frozenset({"u2"})))
    results = make(braze.url).send_batch([member(1), member(2), member(3)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.REJECTED,
                                            Outcome.DELIVERED]
    assert "fault plan" in (results[1].error or "")
    assert braze.members(ATTR, "cart_abandoners") == {"u1", "u3"}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"first_name": "x"}, "no identifier"), ({"email": "nope"}, "email"),
     ({"phone": "12"}, "phone")],
    ids=["no_identifier", "bad_email", "bad_phone"],
)
def test_unsendable_records_rejected_locally(
    braze: BrazeStandin, fields: dict[str, Any], reason: str
) -> None:
    result = make(braze.url).send_batch([Record("p", Action.ADD, fields, "k")])[0]
    assert result.outcome is Outcome.REJECTED and reason in (result.error or "")
    assert braze.request_log() == []


def test_429_retried_then_delivered(braze: BrazeStandin) -> None:
    braze.script(Fault("429"), count=2)
    assert make(braze.url, retries=3).send_batch([member(1)])[0].outcome is Outcome.DELIVERED
    assert braze.members(ATTR, "cart_abandoners") == {"u1"}


def test_persistent_503_raises_transient(braze: BrazeStandin) -> None:
    braze.script(Fault("5xx"), count=10)
    with pytest.raises(TransientDestinationError):
        make(braze.url, retries=1).send_batch([member(1)])


def test_wrong_key_is_an_auth_error_without_the_key(braze: BrazeStandin) -> None:
    with pytest.raises(DestinationAuthError) as info:
        make(braze.url, key="not-the-key").send_batch([member(1)])
    assert "not-the-key" not in str(info.value)
