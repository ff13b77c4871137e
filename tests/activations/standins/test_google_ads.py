"""Google Ads Customer Match stand-in against its contract (destinations.md 3.8)."""

from __future__ import annotations

import hashlib

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.google_ads import GoogleAdsConfig, GoogleAdsStandin

CFG = GoogleAdsConfig()
HEADERS = {"Authorization": f"Bearer {CFG.access_token}", "developer-token": CFG.developer_token}
CID = "1234567890"
USER_LIST = f"customers/{CID}/userLists/555"


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def ads():
    with GoogleAdsStandin() as standin:
        yield standin


def _post(url: str, path: str, body: dict, headers: dict = HEADERS) -> requests.Response:
    return requests.post(f"{url}/v20/{path}", json=body, headers=headers, timeout=10)


def _create(url: str) -> str:
    r = _post(url, f"customers/{CID}/offlineUserDataJobs:create", {"job": {
        "type": "CUSTOMER_MATCH_USER_LIST",
        "customerMatchUserListMetadata": {"userList": USER_LIST}}})
    assert r.status_code == 200
    return r.json()["resourceName"]


def _ops(*emails: str, kind: str = "create") -> list[dict]:
    return [{kind: {"userIdentifiers": [{"hashedEmail": h(e)}]}} for e in emails]


def test_job_lifecycle(ads: GoogleAdsStandin) -> None:
    job = _create(ads.url)
    r = _post(ads.url, f"{job}:addOperations", {"operations": _ops("a", "b", "c")})
    assert r.status_code == 200 and r.json() == {}
    assert ads.members(USER_LIST) == set()  # staged until run
    assert _post(ads.url, f"{job}:run", {}).status_code == 200
    statuses = [requests.get(f"{ads.url}/v20/{job}", headers=HEADERS, timeout=5).json()["status"]
                for _ in range(2)]
    assert statuses == ["RUNNING", "SUCCESS"]
    assert ads.members(USER_LIST) == {h("a"), h("b"), h("c")}
    job2 = _create(ads.url)
    _post(ads.url, f"{job2}:addOperations", {"operations": _ops("a", kind="remove")})
    _post(ads.url, f"{job2}:run", {})
    assert ads.members(USER_LIST) == {h("b"), h("c")}
    q = {"query": "SELECT offline_user_data_job.status FROM offline_user_data_job WHERE "
                  f"offline_user_data_job.resource_name = '{job2}'"}
    rows = _post(ads.url, f"customers/{CID}/googleAds:search", q).json()["results"]
    assert [r["offlineUserDataJob"]["resourceName"] for r in rows] == [job2]


def test_run_twice_is_refused(ads: GoogleAdsStandin) -> None:
    job = _create(ads.url)
    _post(ads.url, f"{job}:run", {})
    r = _post(ads.url, f"{job}:run", {})
    assert r.status_code == 400 and r.json()["error"]["status"] == "FAILED_PRECONDITION"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {CFG.access_token}"},
     {"developer-token": CFG.developer_token, "Authorization": "Bearer nope"}],
    ids=["missing", "no-developer-token", "bad-token"],
)
def test_auth_401(ads: GoogleAdsStandin, headers: dict) -> None:
    r = _post(ads.url, f"customers/{CID}/offlineUserDataJobs:create", {}, headers=headers)
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["status"] == "UNAUTHENTICATED"
    assert err["details"][0]["@type"].endswith("GoogleAdsFailure")


def test_over_limit(ads: GoogleAdsStandin) -> None:
    job = _create(ads.url)
    ops = [{"create": {"userIdentifiers": [{"hashedEmail": "0" * 64}] * 1000}}] * 101
    r = _post(ads.url, f"{job}:addOperations", {"operations": ops})
    assert r.status_code == 400
    codes = r.json()["error"]["details"][0]["errors"][0]["errorCode"]
    assert codes == {"userDataError": "TOO_MANY_USER_IDENTIFIERS"}


def test_partial_failure_reports_operation_index(ads: GoogleAdsStandin) -> None:
    ads.set_faults(FaultPlan(reject_ids=frozenset({h("rejected")})))
    job = _create(ads.url)
    ops = _ops("a") + [{"create": {"userIdentifiers": [{"hashedEmail": "Not-Hashed"}]}}]
    ops += [{"create": {"userIdentifiers": [{"hashedEmail": h("x"), "mobileId": "m"}]}}]
    ops += _ops("rejected", "b")
    r = _post(ads.url, f"{job}:addOperations", {"operations": ops, "enablePartialFailure": True})
    assert r.status_code == 200
    failure = r.json()["partialFailureError"]["details"][0]
    indexes = [e["location"]["fieldPathElements"][0]["index"] for e in failure["errors"]]
    assert indexes == [1, 2, 3]
    _post(ads.url, f"{job}:run", {})
    assert ads.members(USER_LIST) == {h("a"), h("b")}
    # Without partial failure the whole request is refused.
    job2 = _create(ads.url)
    r = _post(ads.url, f"{job2}:addOperations", {"operations": ops})
    assert r.status_code == 400 and ads.jobs()[job2]["staged"] == 0


def test_429_resource_exhausted(ads: GoogleAdsStandin) -> None:
    ads.script(Fault("429", retry_after=3))
    r = _post(ads.url, f"customers/{CID}/offlineUserDataJobs:create", {})
    assert r.status_code == 429
    err = r.json()["error"]
    assert err["status"] == "RESOURCE_EXHAUSTED"
    detail = err["details"][0]["errors"][0]
    assert detail["errorCode"] == {"quotaError": "RESOURCE_EXHAUSTED"}
    assert detail["details"]["quotaErrorDetails"]["retryDelay"] == "3s"
