"""Braze stand-in against its contract (destinations.md 3.2)."""

from __future__ import annotations

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.braze import BrazeConfig, BrazeStandin

HEADERS = {"Authorization": f"Bearer {BrazeConfig().api_key}"}


@pytest.fixture
def bz():
    with BrazeStandin() as standin:
        yield standin


def _track(url: str, body: dict, headers: dict = HEADERS) -> requests.Response:
    return requests.post(f"{url}/users/track", json=body, headers=headers, timeout=5)


def test_track_membership_and_delete(bz: BrazeStandin) -> None:
    r = _track(bz.url, {"attributes": [
        {"external_id": "u1", "audiences": {"add": ["vip"]}, "first_name": "Ann"},
        {"external_id": "u2", "audiences": {"add": ["vip", "churn"]}}],
        "events": [{"external_id": "u1", "name": "entered_vip", "time": "2026-01-01T00:00:00Z"}]})
    assert r.status_code == 201
    assert r.json() == {"message": "success", "attributes_processed": 2, "events_processed": 1}
    assert bz.members("audiences", "vip") == {"u1", "u2"}
    _track(bz.url, {"attributes": [{"external_id": "u2", "audiences": {"remove": ["vip"]}}]})
    assert bz.members("audiences", "vip") == {"u1"}
    assert bz.members("audiences", "churn") == {"u2"}
    r = requests.post(f"{bz.url}/users/delete", json={"external_ids": ["u1", "nobody"]},
                      headers=HEADERS, timeout=5)
    assert r.status_code == 201 and r.json()["deleted"] == 1
    assert set(bz.users()) == {"u2"}


def test_auth(bz: BrazeStandin) -> None:
    r = _track(bz.url, {"attributes": [{"external_id": "u1"}]}, headers={})
    assert r.status_code == 401 and "message" in r.json()
    assert bz.users() == {}


@pytest.mark.parametrize(
    "body",
    [{"attributes": [{"external_id": f"u{i}"} for i in range(76)]},
     {"attributes": [{"external_id": "u"}] * 40,
      "events": [{"external_id": "u", "name": "e"}] * 36}],
    ids=["76-attributes", "76-combined"],
)
def test_over_limit(bz: BrazeStandin, body: dict) -> None:
    r = _track(bz.url, body)
    assert r.status_code == 400 and r.json()["message"] == "Max Input Length Exceeded"
    assert bz.users() == {}


def test_delete_over_limit(bz: BrazeStandin) -> None:
    r = requests.post(f"{bz.url}/users/delete", json={"external_ids": [str(i) for i in range(51)]},
                      headers=HEADERS, timeout=5)
    assert r.status_code == 400


def test_429_with_rate_limit_headers(bz: BrazeStandin) -> None:
    bz.script(Fault("429"))
    r = _track(bz.url, {"attributes": [{"external_id": "u1"}]})
    assert r.status_code == 429 and r.headers["X-RateLimit-Remaining"] == "0"
    assert {"X-RateLimit-Limit", "X-RateLimit-Reset"} <= set(r.headers)
    assert bz.users() == {}


def test_non_fatal_errors(bz: BrazeStandin) -> None:
    bz.set_faults(FaultPlan(reject_ids=frozenset({"bad"})))
    r = _track(bz.url, {"attributes": [{"first_name": "no id"}, {"external_id": "bad"},
                                       {"external_id": "ok"}]})
    assert r.status_code == 201
    body = r.json()
    assert body["message"] == "success" and body["attributes_processed"] == 1
    assert [(e["input_array"], e["index"]) for e in body["errors"]] == [
        ("attributes", 0), ("attributes", 1)]
    assert set(bz.users()) == {"ok"}
