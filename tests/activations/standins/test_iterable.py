"""Iterable stand-in against its contract (destinations.md 3.4)."""

from __future__ import annotations

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.iterable import IterableConfig, IterableStandin

HEADERS = {"Api-Key": IterableConfig().api_key}


@pytest.fixture
def it():
    with IterableStandin(IterableConfig(max_users=1000)) as standin:
        yield standin


def _post(url: str, path: str, body: dict, headers: dict = HEADERS) -> requests.Response:
    return requests.post(f"{url}{path}", json=body, headers=headers, timeout=5)


def test_subscribe_unsubscribe_bulk_update(it: IterableStandin) -> None:
    r = _post(it.url, "/api/lists/subscribe", {"listId": 7, "subscribers": [
        {"email": "A@x.io", "dataFields": {"tier": "gold"}}, {"userId": "u2"}]})
    assert r.status_code == 200 and (r.json()["successCount"], r.json()["failCount"]) == (2, 0)
    assert it.members(7) == {"a@x.io", "u2"}
    _post(it.url, "/api/users/bulkUpdate", {"users": [{"email": "a@x.io",
                                                       "dataFields": {"tier": "silver"}}]})
    assert it.users()["a@x.io"]["tier"] == "silver"
    r = _post(it.url, "/api/lists/unsubscribe", {"listId": 7, "subscribers": [
        {"email": "a@x.io"}, {"email": "ghost@x.io"}]})
    body = r.json()
    assert (body["successCount"], body["failCount"]) == (1, 1)
    assert body["failedUpdates"]["notFoundEmails"] == ["ghost@x.io"]
    assert it.members(7) == {"u2"}


def test_auth(it: IterableStandin) -> None:
    r = _post(it.url, "/api/users/bulkUpdate", {"users": []}, headers={"Api-Key": "nope"})
    assert r.status_code == 401
    assert r.json() == {"msg": "Invalid API key", "code": "BadApiKey", "params": None}


def test_over_limit(it: IterableStandin) -> None:
    r = _post(it.url, "/api/users/bulkUpdate",
              {"users": [{"email": f"u{i}@x.io"} for i in range(1001)]})
    assert r.status_code == 400 and r.json()["code"] == "BatchTooLarge"


@pytest.mark.parametrize(
    "path,body",
    [("/api/lists/subscribe", {"listId": "seven", "subscribers": []}),
     ("/api/lists/unsubscribe", {"subscribers": []}),
     ("/api/users/bulkUpdate", {"users": "x"})],
    ids=["listid-type", "listid-missing", "users-type"],
)
def test_spec_validation(specs_available, it: IterableStandin, path: str, body: dict) -> None:
    r = _post(it.url, path, body)
    assert r.status_code == 400 and r.json()["code"] == "BadParams"


def test_429(it: IterableStandin) -> None:
    it.script(Fault("429"))
    r = _post(it.url, "/api/users/bulkUpdate", {"users": [{"email": "a@x.io"}]})
    assert r.status_code == 429 and r.json()["code"] == "RateLimitExceeded"
    assert it.users() == {}


def test_failed_updates_by_identifier(it: IterableStandin) -> None:
    it.set_faults(FaultPlan(reject_ids=frozenset({"bad@x.io", "u9"})))
    r = _post(it.url, "/api/users/bulkUpdate", {"users": [
        {"email": "bad@x.io"}, {"userId": "u9"}, {"email": "not-an-email"}, {"email": "ok@x.io"}]})
    body = r.json()
    assert (body["successCount"], body["failCount"]) == (1, 3)
    failed = body["failedUpdates"]
    assert failed["invalidDataEmails"] == ["bad@x.io"]
    assert failed["invalidDataUserIds"] == ["u9"]
    assert failed["invalidEmails"] == ["not-an-email"] == body["invalidEmails"]


def test_event_id_dedup(it: IterableStandin) -> None:
    it.script(Fault("5xx", phase="after"))
    event = {"email": "a@x.io", "eventName": "cartAbandoned", "id": "evt-1"}
    assert _post(it.url, "/api/events/track", event).status_code == 503
    r = _post(it.url, "/api/events/track", event)
    assert r.status_code == 200 and r.json()["code"] == "Success"
    assert len(it.events()) == 1 and it.deliveries_by_key() == {"evt-1": 2}
