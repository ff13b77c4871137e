"""SendGrid Marketing Contacts stand-in against its contract (destinations.md 3.1)."""

from __future__ import annotations

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.sendgrid import SendGridConfig, SendGridStandin

AUTH = {"Authorization": f"Bearer {SendGridConfig().api_key}"}
LIST = "0d3a7c2e-4b1f-4f8e-9a55-1a2b3c4d5e6f"


@pytest.fixture
def sg():
    with SendGridStandin(SendGridConfig(pending_polls=1)) as standin:
        yield standin


def _put(url: str, contacts: list[dict], headers: dict | None = None, **extra) -> requests.Response:
    body = {"list_ids": [LIST], "contacts": contacts, **extra}
    return requests.put(f"{url}/v3/marketing/contacts", json=body,
                        headers=AUTH if headers is None else headers, timeout=10)


def test_upsert_adds_to_list_and_job_completes(sg: SendGridStandin) -> None:
    r = _put(sg.url, [{"email": "A@Example.com", "first_name": "Ann"}, {"email": "b@example.com"}])
    assert r.status_code == 202
    job_id = r.json()["job_id"]
    assert sg.members(LIST) == {"a@example.com", "b@example.com"}
    first = requests.get(f"{sg.url}/v3/marketing/contacts/imports/{job_id}", headers=AUTH,
                         timeout=5).json()
    second = requests.get(f"{sg.url}/v3/marketing/contacts/imports/{job_id}", headers=AUTH,
                          timeout=5).json()
    assert first["status"] == "pending"
    assert second["status"] == "completed"
    assert second["results"]["created_count"] == 2 and second["results"]["errored_count"] == 0
    # Upsert again: no new contact, an update.
    job2 = _put(sg.url, [{"email": "a@example.com", "last_name": "Lee"}]).json()["job_id"]
    assert len(sg.contacts()) == 2
    assert sg.contacts()["a@example.com"]["last_name"] == "Lee"
    assert sg.jobs()[job2]["results"]["updated_count"] == 1


def test_search_then_remove_from_list(sg: SendGridStandin) -> None:
    _put(sg.url, [{"email": "a@example.com"}, {"email": "b@example.com"}])
    r = requests.post(f"{sg.url}/v3/marketing/contacts/search/emails", headers=AUTH, timeout=5,
                      json={"emails": ["a@example.com", "zz@example.com"]})
    assert r.status_code == 200
    result = r.json()["result"]
    assert "error" in result["zz@example.com"]
    cid = result["a@example.com"]["contact"]["id"]
    r = requests.delete(f"{sg.url}/v3/marketing/lists/{LIST}/contacts",
                        params={"contact_ids": cid}, headers=AUTH, timeout=5)
    assert r.status_code == 202 and "job_id" in r.json()
    assert sg.members(LIST) == {"b@example.com"}
    none = requests.post(f"{sg.url}/v3/marketing/contacts/search/emails", headers=AUTH,
                         timeout=5, json={"emails": ["zz@example.com"]})
    assert none.status_code == 404


@pytest.mark.parametrize(
    "params,status", [({}, 400), ({"contact_ids": "nope"}, 404)], ids=["missing-ids", "unknown-id"]
)
def test_remove_errors(sg: SendGridStandin, params: dict, status: int) -> None:
    _put(sg.url, [{"email": "a@example.com"}])
    r = requests.delete(f"{sg.url}/v3/marketing/lists/{LIST}/contacts", params=params,
                        headers=AUTH, timeout=5)
    assert r.status_code == status
    assert r.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}],
    ids=["missing", "wrong-key", "wrong-scheme"],
)
def test_auth_401_shape(sg: SendGridStandin, headers: dict) -> None:
    r = _put(sg.url, [{"email": "a@example.com"}], headers=headers)
    assert r.status_code == 401
    assert r.json() == {"errors": [{"field": None, "message": "authorization required"}]}
    assert sg.contacts() == {}


def test_over_limit_batch(sg: SendGridStandin) -> None:
    r = _put(sg.url, [{"email": f"u{i}@example.com"} for i in range(30_001)])
    assert r.status_code == 400
    assert r.json()["errors"][0]["field"] == "contacts"
    assert sg.contacts() == {}


def test_search_over_limit(sg: SendGridStandin) -> None:
    r = requests.post(f"{sg.url}/v3/marketing/contacts/search/emails", headers=AUTH, timeout=5,
                      json={"emails": [f"u{i}@example.com" for i in range(101)]})
    assert r.status_code == 400


@pytest.mark.parametrize(
    "body,field",
    [
        pytest.param({"contacts": []}, "contacts", id="empty-contacts"),
        pytest.param({"contacts": [{"email": "a@x.io", "first_name": "x" * 51}]},
                     "contacts[0].first_name", id="first-name-too-long"),
        pytest.param({"list_ids": "not-a-list", "contacts": [{"email": "a@x.io"}]}, "list_ids",
                     id="list-ids-type"),
        pytest.param({"list_ids": [LIST]}, None, id="contacts-missing"),
    ],
)
def test_spec_validation_rejects_malformed_body(
    specs_available, sg: SendGridStandin, body: dict, field: str | None
) -> None:
    r = requests.put(f"{sg.url}/v3/marketing/contacts", json=body, headers=AUTH, timeout=5)
    assert r.status_code == 400
    errors = r.json()["errors"]
    assert errors and all("message" in e for e in errors)
    assert field in [e["field"] for e in errors]
    assert sg.contacts() == {}


def test_429_carries_rate_limit_headers(sg: SendGridStandin) -> None:
    sg.script(Fault("429"), count=1)
    r = _put(sg.url, [{"email": "a@example.com"}])
    assert r.status_code == 429
    assert r.json() == {"errors": [{"field": None, "message": "too many requests"}]}
    assert r.headers["X-RateLimit-Remaining"] == "0"
    assert int(r.headers["X-RateLimit-Reset"]) > 0 and int(r.headers["X-RateLimit-Limit"]) > 0
    ok = _put(sg.url, [{"email": "a@example.com"}])
    assert ok.status_code == 202 and "X-RateLimit-Remaining" in ok.headers


def test_enforced_rate_limit() -> None:
    with SendGridStandin(SendGridConfig(rate_limit=2, rate_window_seconds=60)) as sg:
        codes = [_put(sg.url, [{"email": "a@example.com"}]).status_code for _ in range(3)]
    assert codes == [202, 202, 429]


def test_per_record_rejection_in_job(sg: SendGridStandin) -> None:
    sg.set_faults(FaultPlan(reject_ids=frozenset({"bad@example.com"})))
    job_id = _put(sg.url, [{"email": "bad@example.com"}, {"email": "ok@example.com"},
                           {"first_name": "no identifier"}]).json()["job_id"]
    for _ in range(2):
        job = requests.get(f"{sg.url}/v3/marketing/contacts/imports/{job_id}", headers=AUTH,
                           timeout=5).json()
    assert job["status"] == "errored"
    assert job["results"]["errored_count"] == 2
    errors = requests.get(job["results"]["errors_url"], timeout=5).json()["errors"]
    assert [e["index"] for e in errors] == [0, 2]
    assert sg.members(LIST) == {"ok@example.com"}


def test_upsert_is_idempotent_after_lost_answer(sg: SendGridStandin) -> None:
    sg.script(Fault("5xx", phase="after"))
    assert _put(sg.url, [{"email": "a@example.com"}]).status_code == 503
    assert _put(sg.url, [{"email": "a@example.com"}]).status_code == 202
    assert len(sg.contacts()) == 1 and sg.members(LIST) == {"a@example.com"}
