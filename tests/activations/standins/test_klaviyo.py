"""Klaviyo stand-in against its contract (destinations.md 3.3)."""

from __future__ import annotations

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.klaviyo import KlaviyoConfig, KlaviyoStandin

CFG = KlaviyoConfig()
HEADERS = {"Authorization": f"Klaviyo-API-Key {CFG.api_key}", "revision": CFG.revision,
           "Content-Type": "application/vnd.api+json"}
LIST = "Xy12Ab"


@pytest.fixture
def kl():
    with KlaviyoStandin() as standin:
        yield standin


def _bulk(emails: list[str], lists: tuple[str, ...] = (LIST,)) -> dict:
    return {"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": [
        {"type": "profile", "attributes": {"email": e}} for e in emails]}},
        "relationships": {"lists": {"data": [{"type": "list", "id": x} for x in lists]}}}}


def _rel(ids: list[str]) -> dict:
    return {"data": [{"type": "profile", "id": i} for i in ids]}


def test_bulk_import_job_and_list_membership(kl: KlaviyoStandin) -> None:
    r = requests.post(f"{kl.url}/api/profile-bulk-import-jobs", json=_bulk(["A@x.io", "b@x.io"]),
                      headers=HEADERS, timeout=5)
    assert r.status_code == 202
    assert r.headers["Content-Type"] == "application/vnd.api+json"
    job = r.json()["data"]
    assert job["attributes"]["status"] == "queued" and job["attributes"]["total_count"] == 2
    statuses = [requests.get(f"{kl.url}/api/profile-bulk-import-jobs/{job['id']}",
                             headers=HEADERS, timeout=5).json()["data"]["attributes"]["status"]
                for _ in range(3)]
    assert statuses == ["processing", "complete", "complete"]
    assert kl.members(LIST) == {"a@x.io", "b@x.io"}
    pid = kl.profile_id("a@x.io")
    r = requests.delete(f"{kl.url}/api/lists/{LIST}/relationships/profiles", json=_rel([pid]),
                        headers=HEADERS, timeout=5)
    assert r.status_code == 204 and kl.members(LIST) == {"b@x.io"}
    r = requests.post(f"{kl.url}/api/lists/{LIST}/relationships/profiles", json=_rel([pid]),
                      headers=HEADERS, timeout=5)
    assert r.status_code == 204 and kl.members(LIST) == {"a@x.io", "b@x.io"}
    ids = requests.get(f"{kl.url}/api/profile-bulk-import-jobs/{job['id']}/relationships/profiles",
                       headers=HEADERS, timeout=5).json()["data"]
    assert {i["id"] for i in ids} == {pid, kl.profile_id("b@x.io")}


@pytest.mark.parametrize(
    "drop,status,code",
    [("Authorization", 401, "not_authenticated"), ("revision", 400, "invalid")],
    ids=["no-key", "no-revision"],
)
def test_auth_and_revision(kl: KlaviyoStandin, drop: str, status: int, code: str) -> None:
    headers = {k: v for k, v in HEADERS.items() if k != drop}
    r = requests.post(f"{kl.url}/api/profile-bulk-import-jobs", json=_bulk(["a@x.io"]),
                      headers=headers, timeout=5)
    assert r.status_code == status
    [err] = r.json()["errors"]
    assert err["code"] == code and {"id", "title", "detail", "source"} <= set(err)
    assert kl.profiles() == {}


@pytest.mark.parametrize(
    "path,body",
    [("/api/profile-bulk-import-jobs", _bulk([f"u{i}@x.io" for i in range(10_001)])),
     (f"/api/lists/{LIST}/relationships/profiles", _rel([f"p{i}" for i in range(1001)]))],
    ids=["bulk-10001", "list-1001"],
)
def test_over_limit(kl: KlaviyoStandin, path: str, body: dict) -> None:
    r = requests.post(kl.url + path, json=body, headers=HEADERS, timeout=10)
    assert r.status_code == 400 and r.json()["errors"][0]["code"] == "invalid"


@pytest.mark.parametrize(
    "path,body,pointer",
    [(f"/api/lists/{LIST}/relationships/profiles", {"data": [{"type": "person", "id": "x"}]},
      "/data/0/type"),
     ("/api/profile-bulk-import-jobs", {"data": {"type": "profile-bulk-import-job"}}, "/data"),
     ("/api/events", {"data": {"type": "event", "attributes": {"properties": {}}}},
      "/data/attributes")],
    ids=["list-type-enum", "bulk-no-attributes", "event-no-metric"],
)
def test_spec_validation(specs_available, kl: KlaviyoStandin, path: str, body: dict,
                         pointer: str) -> None:
    r = requests.post(kl.url + path, json=body, headers=HEADERS, timeout=5)
    assert r.status_code == 400
    err = r.json()["errors"][0]
    assert err["code"] == "invalid" and err["source"]["pointer"] == pointer


def test_429_retry_after_and_ratelimit_headers(kl: KlaviyoStandin) -> None:
    kl.script(Fault("429", retry_after=2))
    r = requests.post(f"{kl.url}/api/profile-bulk-import-jobs", json=_bulk(["a@x.io"]),
                      headers=HEADERS, timeout=5)
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert "RateLimit-Limit" not in r.headers
    assert r.json()["errors"][0]["code"] == "throttled"
    ok = requests.post(f"{kl.url}/api/profile-bulk-import-jobs", json=_bulk(["a@x.io"]),
                       headers=HEADERS, timeout=5)
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"} <= set(ok.headers)


def test_import_errors_per_record(kl: KlaviyoStandin) -> None:
    kl.set_faults(FaultPlan(reject_ids=frozenset({"bad@x.io"})))
    job = requests.post(f"{kl.url}/api/profile-bulk-import-jobs",
                        json=_bulk(["ok@x.io", "bad@x.io"]), headers=HEADERS,
                        timeout=5).json()["data"]
    assert job["attributes"]["failed_count"] == 1
    errors = requests.get(f"{kl.url}/api/profile-bulk-import-jobs/{job['id']}/import-errors",
                          headers=HEADERS, timeout=5).json()["data"]
    [err] = errors
    assert err["type"] == "import-error"
    assert err["attributes"]["source"]["pointer"] == "/data/attributes/profiles/data/1"
    assert err["attributes"]["original_payload"]["attributes"]["email"] == "bad@x.io"
    assert kl.members(LIST) == {"ok@x.io"}


def test_event_unique_id_dedup(kl: KlaviyoStandin) -> None:
    event = {"data": {"type": "event", "attributes": {
        "properties": {"cart": "c1"}, "unique_id": "evt-1",
        "metric": {"data": {"type": "metric", "attributes": {"name": "Cart Abandoned"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "a@x.io"}}}}}}
    kl.script(Fault("drop", phase="after"))
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{kl.url}/api/events", json=event, headers=HEADERS, timeout=5)
    r = requests.post(f"{kl.url}/api/events", json=event, headers=HEADERS, timeout=5)
    assert r.status_code == 202
    assert len(kl.events()) == 1 and kl.deliveries_by_key() == {"evt-1": 2}
