"""Google Ads Customer Match client against the Google Ads stand-in (real HTTP, job lifecycle)."""

from __future__ import annotations

import hashlib
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
from activations.destinations.google_ads import GoogleAdsDestination
from activations.http import HttpClient, HttpSettings
from activations.standins.faults import Fault, FaultPlan
from activations.standins.google_ads import GoogleAdsConfig, GoogleAdsStandin

CFG = GoogleAdsConfig()
USER_LIST = "customers/1234567890/userLists/555"


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def fast_http(retries: int = 2) -> HttpClient:
    return HttpClient(HttpSettings(total_retries=retries, backoff_factor=0.0,
                                   backoff_jitter=0.0, retry_after_max=1))


@pytest.fixture
def google() -> Iterator[GoogleAdsStandin]:
    with GoogleAdsStandin() as standin:
        yield standin


def make(url: str, retries: int = 2, token: str = CFG.access_token, **opts: Any
         ) -> GoogleAdsDestination:
    creds = {"access_token": token, "developer_token": CFG.developer_token}
    options = {"customer_id": "123-456-7890", "user_list_id": "555", **opts}
    return GoogleAdsDestination(DestinationConfig("google_ads", url, creds, options),
                                fast_http(retries))


def person(n: int, action: Action = Action.ADD, **fields: Any) -> Record:
    base = {"email": f" User{n}@Example.com ", "phone": f"(650) 555-{n:04d}"}
    return Record(f"p{n}", action, {**base, **fields}, f"k{n}-{action}")


def test_create_add_run_with_google_normalization(google: GoogleAdsStandin) -> None:
    results = make(google.url).send_batch([person(1)])
    assert results[0].outcome is Outcome.DELIVERED
    # Google's rule: phone hashed as E.164 WITH '+' (Meta's would be without).
    assert google.members(USER_LIST) == {h("user1@example.com"), h("+16505550001")}
    paths = [r.path.rsplit(":", 1)[-1] for r in google.request_log()]
    assert paths == ["create", "addOperations", "run"]
    [job] = google.jobs().values()
    assert job["status"] == "RUNNING" and results[0].external_id == job["resourceName"]


def test_address_info_needs_all_four_and_keeps_geo_plain(google: GoogleAdsStandin) -> None:
    rec = person(1, first_name="Mrs. Jane", last_name="Doe Jr.", country="us",
                 postal_code="94035")
    make(google.url).send_batch([rec])
    address = [m for m in google.members(USER_LIST) if m.startswith("addressInfo:")]
    assert len(address) == 1
    assert '"countryCode": "US"' in address[0] and '"postalCode": "94035"' in address[0]
    assert h("jane") in address[0] and h("doe") in address[0]


def test_remove_operations_remove_members(google: GoogleAdsStandin) -> None:
    dest = make(google.url)
    dest.send_batch([person(1), person(2)])
    results = dest.send_batch([person(1, Action.REMOVE)])
    assert results[0].outcome is Outcome.DELIVERED
    assert google.members(USER_LIST) == {h("user2@example.com"), h("+16505550002")}


def test_partial_failure_index_rejects_that_record(google: GoogleAdsStandin) -> None:
    google.set_faults(FaultPlan(reject_ids=frozenset({h("user2@example.com")})))
    results = make(google.url).send_batch([person(1), person(2), person(3)])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.REJECTED,
                                            Outcome.DELIVERED]
    assert "REJECTED_BY_STANDIN" in (results[1].error or "")
    assert h("user2@example.com") not in google.members(USER_LIST)


def test_crm_id_list_sends_third_party_user_id(google: GoogleAdsStandin) -> None:
    rec = Record("p1", Action.ADD, {"external_id": "crm-42", "email": "a@b.co"}, "k")
    make(google.url, upload_key_type="CRM_ID").send_batch([rec])
    assert google.members(USER_LIST) == {"crm-42"}


def test_record_without_identifier_rejected_locally(google: GoogleAdsStandin) -> None:
    rec = Record("p1", Action.ADD, {"email": "nope", "first_name": "Ann"}, "k")
    result = make(google.url).send_batch([rec])[0]
    assert result.outcome is Outcome.REJECTED and "no usable identifier" in (result.error or "")
    assert google.request_log() == []


def test_quota_429_retried_then_delivered(google: GoogleAdsStandin) -> None:
    google.script(Fault("429", retry_after=0), count=2)
    assert make(google.url, retries=3).send_batch([person(1)])[0].outcome is Outcome.DELIVERED


def test_persistent_429_raises_transient(google: GoogleAdsStandin) -> None:
    google.script(Fault("429", retry_after=0), count=10)
    with pytest.raises(TransientDestinationError):
        make(google.url, retries=1).send_batch([person(1)])
    assert google.members(USER_LIST) == set()


def test_bad_token_is_an_auth_error(google: GoogleAdsStandin) -> None:
    with pytest.raises(DestinationAuthError) as info:
        make(google.url, token="ya29.wrong").send_batch([person(1)])
    assert "ya29.wrong" not in str(info.value)
