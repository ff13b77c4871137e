"""Iterable client against the Iterable stand-in (swagger-validated bodies, real HTTP)."""

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
from activations.destinations.iterable import IterableDestination
from activations.http import HttpClient, HttpSettings
from activations.standins.faults import Fault, FaultPlan
from activations.standins.iterable import IterableConfig, IterableStandin

KEY = IterableConfig().api_key
LIST = 4242


def fast_http(retries: int = 2) -> HttpClient:
    return HttpClient(HttpSettings(total_retries=retries, backoff_factor=0.0,
                                   backoff_jitter=0.0, retry_after_max=1))


@pytest.fixture
def iterable() -> Iterator[IterableStandin]:
    with IterableStandin() as standin:
        yield standin


def make(url: str, retries: int = 2, key: str = KEY) -> IterableDestination:
    config = DestinationConfig("iterable", url, {"api_key": key}, {"list_id": str(LIST)})
    return IterableDestination(config, fast_http(retries))


def member(n: int, action: Action = Action.ADD, **extra: Any) -> Record:
    return Record(f"p{n}", action, {"email": f"User{n}@Example.com", "first_name": "Ann", **extra},
                  f"k{n}-{action}")


def test_add_subscribes_to_the_list(iterable: IterableStandin) -> None:
    results = make(iterable.url).send_batch([member(1, phone="(650) 555-1212"), member(2)])
    assert {r.outcome for r in results} == {Outcome.DELIVERED}
    assert iterable.members(LIST) == {"user1@example.com", "user2@example.com"}
    user = iterable.users()["user1@example.com"]
    assert user["first_name"] == "Ann" and user["phoneNumber"] == "+16505551212"


def test_update_goes_through_bulk_update(iterable: IterableStandin) -> None:
    make(iterable.url).send_batch([member(1, Action.UPDATE, tier="gold")])
    assert iterable.request_log()[0].path == "/api/users/bulkUpdate"
    assert iterable.users()["user1@example.com"]["tier"] == "gold"
    assert iterable.members(LIST) == set()


def test_remove_unsubscribes_from_list_only(iterable: IterableStandin) -> None:
    dest = make(iterable.url)
    dest.send_batch([member(1), member(2)])
    results = dest.send_batch([member(1, Action.REMOVE), member(9, Action.REMOVE)])
    # user 9 is unknown to Iterable (notFoundEmails): not a member, so the removal holds.
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert iterable.members(LIST) == {"user2@example.com"}
    assert "user1@example.com" in iterable.users()


def test_failed_updates_reject_by_identifier(iterable: IterableStandin) -> None:
    iterable.set_faults(FaultPlan(reject_ids=frozenset({"user2@example.com"})))
    results = make(iterable.url).send_batch([member(1), member(2), member(3)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.REJECTED,
                                            Outcome.DELIVERED]
    assert results[1].error == "iterable: invalidDataEmails"


def test_send_passes_event_id_so_resend_updates_not_duplicates(iterable: IterableStandin) -> None:
    rec = Record("p1", Action.SEND, {"email": "a@example.com", "event_name": "cartReminder",
                                     "cart_id": "c-1"}, "key-1")
    dest = make(iterable.url)
    dest.send_batch([rec])
    dest.send_batch([rec])
    [event] = iterable.events()
    assert event["id"] == "key-1" and event["eventName"] == "cartReminder"
    assert event["dataFields"] == {"cart_id": "c-1"}
    assert iterable.deliveries_by_key() == {"key-1": 2}


@pytest.mark.parametrize(
    ("size", "requests"), [(1000, 1), (1001, 2)], ids=["one_chunk_1000", "splits_at_1001"]
)
def test_chunks_at_1000_users(iterable: IterableStandin, size: int, requests: int) -> None:
    results = make(iterable.url).send_batch([member(i) for i in range(size)])
    assert all(r.outcome is Outcome.DELIVERED for r in results)
    assert len(iterable.request_log()) == requests and len(iterable.members(LIST)) == size


def test_unsendable_record_rejected_locally(iterable: IterableStandin) -> None:
    result = make(iterable.url).send_batch([Record("p", Action.ADD, {"first_name": "x"}, "k")])
    assert result[0].outcome is Outcome.REJECTED and "no identifier" in (result[0].error or "")
    assert iterable.request_log() == []


def test_429_retried_then_delivered(iterable: IterableStandin) -> None:
    iterable.script(Fault("429"), count=2)
    assert make(iterable.url, retries=3).send_batch([member(1)])[0].outcome is Outcome.DELIVERED


def test_persistent_5xx_raises_transient(iterable: IterableStandin) -> None:
    iterable.script(Fault("5xx"), count=10)
    with pytest.raises(TransientDestinationError):
        make(iterable.url, retries=1).send_batch([member(1)])


def test_wrong_key_is_an_auth_error(iterable: IterableStandin) -> None:
    with pytest.raises(DestinationAuthError) as info:
        make(iterable.url, key="bad-key").send_batch([member(1)])
    assert "bad-key" not in str(info.value)
