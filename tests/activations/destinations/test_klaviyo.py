"""Klaviyo client against the Klaviyo stand-in (spec-validated JSON:API bodies, real HTTP).

The stand-in has no GET /api/profiles yet, which removal needs to resolve emails to profile ids;
`ProfilesLookupStandin` adds it here the way Klaviyo documents it (`filter=any(email,[...])`).
"""

from __future__ import annotations

import json
import re
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
from activations.destinations.klaviyo import KlaviyoDestination
from activations.http import HttpClient, HttpSettings
from activations.standins.core import Request, Response, Route, json_response
from activations.standins.faults import Fault, FaultPlan
from activations.standins.klaviyo import KlaviyoConfig, KlaviyoStandin

KEY = KlaviyoConfig().api_key
LIST = "LstAbc"


class ProfilesLookupStandin(KlaviyoStandin):
    def routes(self) -> list[Route]:
        return [*super().routes(), Route.of("GET", "/api/profiles", self._get_profiles)]

    def _get_profiles(self, req: Request) -> Response:
        match = re.fullmatch(r"any\(email,(\[.*\])\)", req.arg("filter") or "")
        assert match, req.arg("filter")
        wanted = {e.lower() for e in json.loads(match.group(1))}
        assert len(wanted) <= 100
        data = [{"type": "profile", "id": pid, "attributes": {"email": p.get("email")}}
                for pid, p in self.profiles().items() if p.get("email") in wanted]
        return json_response(200, {"data": data}, content_type="application/vnd.api+json")


def fast_http(retries: int = 2) -> HttpClient:
    return HttpClient(HttpSettings(total_retries=retries, backoff_factor=0.0,
                                   backoff_jitter=0.0, retry_after_max=1))


@pytest.fixture
def klaviyo() -> Iterator[ProfilesLookupStandin]:
    with ProfilesLookupStandin() as standin:
        yield standin


def make(url: str, retries: int = 2, key: str = KEY) -> KlaviyoDestination:
    config = DestinationConfig("klaviyo", url, {"api_key": key},
                               {"list_id": LIST, "job_poll_interval_seconds": 0})
    return KlaviyoDestination(config, fast_http(retries), sleep=lambda s: None)


def member(n: int, action: Action = Action.ADD, **extra: Any) -> Record:
    fields = {"email": f"User{n}@Example.com", "first_name": "Ann",
              "phone": f"(650) 555-12{n:02d}", **extra}
    return Record(f"p{n}", action, fields, f"k{n}-{action}")


def test_add_imports_profiles_into_the_list(klaviyo: ProfilesLookupStandin) -> None:
    results = make(klaviyo.url).send_batch([member(1, tier="gold"), member(2)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert klaviyo.members(LIST) == {"user1@example.com", "user2@example.com"}
    profile = klaviyo.profiles()[klaviyo.profile_id("user1@example.com") or ""]
    assert profile["phone_number"] == "+16505551201" and profile["properties"] == {"tier": "gold"}
    first = klaviyo.request_log()[0]
    assert first.path == "/api/profile-bulk-import-jobs"
    # Job polled until complete: queued -> processing -> complete.
    assert [r.path for r in klaviyo.request_log()].count(
        f"/api/profile-bulk-import-jobs/{results[0].external_id}") >= 2


def test_import_errors_reject_the_right_records(klaviyo: ProfilesLookupStandin) -> None:
    klaviyo.set_faults(FaultPlan(reject_ids=frozenset({"user2@example.com"})))
    results = make(klaviyo.url).send_batch([member(1), member(2), member(3)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.REJECTED,
                                            Outcome.DELIVERED]
    assert "Profile rejected" in (results[1].error or "")
    assert klaviyo.members(LIST) == {"user1@example.com", "user3@example.com"}


def test_remove_resolves_ids_by_email_and_leaves_the_list(klaviyo: ProfilesLookupStandin) -> None:
    dest = make(klaviyo.url)
    dest.send_batch([member(1), member(2)])
    results = dest.send_batch([member(1, Action.REMOVE), member(9, Action.REMOVE)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert results[0].external_id == klaviyo.profile_id("user1@example.com")
    assert results[1].error == "not a Klaviyo profile"
    assert klaviyo.members(LIST) == {"user2@example.com"}


def test_send_uses_unique_id_so_a_resend_is_recorded_once(klaviyo: ProfilesLookupStandin) -> None:
    rec = Record("p1", Action.SEND, {"email": "a@example.com", "event_name": "Cart Reminder",
                                     "cart_id": "c-1"}, "key-1")
    dest = make(klaviyo.url)
    assert dest.send_batch([rec])[0].outcome is Outcome.DELIVERED
    assert dest.send_batch([rec])[0].outcome is Outcome.DELIVERED
    [event] = klaviyo.events()
    assert event["metric"] == "Cart Reminder" and event["unique_id"] == "key-1"
    assert event["properties"] == {"cart_id": "c-1"}
    assert klaviyo.deliveries_by_key() == {"key-1": 2}


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"first_name": "x"}, "no identifier"), ({"email": "nope"}, "email")],
    ids=["no_identifier", "bad_email"],
)
def test_unsendable_records_rejected_locally(
    klaviyo: ProfilesLookupStandin, fields: dict[str, Any], reason: str
) -> None:
    result = make(klaviyo.url).send_batch([Record("p", Action.ADD, fields, "k")])[0]
    assert result.outcome is Outcome.REJECTED and reason in (result.error or "")
    assert klaviyo.request_log() == []


def test_429_with_retry_after_is_retried(klaviyo: ProfilesLookupStandin) -> None:
    klaviyo.script(Fault("429", retry_after=0), count=2)
    assert make(klaviyo.url, retries=3).send_batch([member(1)])[0].outcome is Outcome.DELIVERED
    assert klaviyo.members(LIST) == {"user1@example.com"}


def test_persistent_429_raises_transient(klaviyo: ProfilesLookupStandin) -> None:
    klaviyo.script(Fault("429", retry_after=0), count=10)
    with pytest.raises(TransientDestinationError):
        make(klaviyo.url, retries=1).send_batch([member(1)])


def test_wrong_key_is_an_auth_error(klaviyo: ProfilesLookupStandin) -> None:
    with pytest.raises(DestinationAuthError) as info:
        make(klaviyo.url, key="pk_wrong").send_batch([member(1)])
    assert "pk_wrong" not in str(info.value)
