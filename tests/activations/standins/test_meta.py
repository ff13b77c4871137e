"""Meta Custom Audiences stand-in against its contract (destinations.md 3.7)."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.meta import MetaConfig, MetaStandin

TOKEN = MetaConfig().access_token
AUD = "23850000000000001"


def h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture
def meta():
    with MetaStandin() as standin:
        yield standin


def _call(url: str, method: str, payload: dict, session: dict | None = None,
          token: str | None = TOKEN, as_json: bool = False) -> requests.Response:
    params: dict = {"payload": json.dumps(payload)}
    if session is not None:
        params["session"] = json.dumps(session)
    if token is not None:
        params["access_token"] = token
    if as_json:
        body = {k: json.loads(v) if k != "access_token" else v for k, v in params.items()}
        return requests.request(method, f"{url}/v25.0/{AUD}/users", json=body, timeout=5)
    return requests.request(method, f"{url}/v25.0/{AUD}/users", data=params, timeout=5)


@pytest.mark.parametrize("as_json", [False, True], ids=["form", "json"])
def test_add_then_remove(meta: MetaStandin, as_json: bool) -> None:
    rows = [h("a@example.com"), h("b@example.com")]
    r = _call(meta.url, "POST", {"schema": "EMAIL_SHA256", "data": rows},
              session={"session_id": 9, "batch_seq": 1, "last_batch_flag": True},
              as_json=as_json)
    assert r.status_code == 200
    assert r.json() == {"audience_id": AUD, "session_id": 9, "num_received": 2,
                        "num_invalid_entries": 0, "invalid_entry_samples": {}}
    assert meta.members(AUD) == set(rows)
    r = _call(meta.url, "DELETE", {"schema": ["EMAIL"], "data": [[rows[0]]]}, as_json=as_json)
    assert r.status_code == 200 and meta.members(AUD) == {rows[1]}


def test_multi_key_rows_and_bearer(meta: MetaStandin) -> None:
    body = {"payload": {"schema": ["EMAIL", "PHONE"], "data": [[h("a@x.io"), h("15551234567")]]}}
    r = requests.post(f"{meta.url}/v25.0/{AUD}/users", json=body, timeout=5,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200
    assert meta.members(AUD) == {f"{h('a@x.io')}|{h('15551234567')}"}


@pytest.mark.parametrize("token,code", [(None, 104), ("bad", 190)], ids=["missing", "invalid"])
def test_auth_graph_error(meta: MetaStandin, token: str | None, code: int) -> None:
    r = _call(meta.url, "POST", {"schema": "EMAIL_SHA256", "data": [h("a")]}, token=token)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == code and err["type"] == "OAuthException" and "fbtrace_id" in err
    assert meta.members(AUD) == set()


def test_over_limit(meta: MetaStandin) -> None:
    r = _call(meta.url, "POST", {"schema": "EMAIL_SHA256", "data": [h(str(i)) for i in
                                                                    range(10_001)]})
    assert r.status_code == 400 and r.json()["error"]["code"] == 100


@pytest.mark.parametrize(
    "payload",
    [{"schema": "NOPE", "data": []}, {"schema": ["EMAIL", "EMAIL"], "data": []}, {"data": []}],
    ids=["unknown-key", "duplicate-key", "no-schema"],
)
def test_bad_schema(meta: MetaStandin, payload: dict) -> None:
    r = _call(meta.url, "POST", payload)
    assert r.status_code == 400 and r.json()["error"]["code"] == 100


def test_invalid_entries_sampled(meta: MetaStandin) -> None:
    meta.set_faults(FaultPlan(reject_ids=frozenset({h("rejected")})))
    rows = [h("ok"), "A@EXAMPLE.COM", h("ok").upper(), h("rejected")]
    r = _call(meta.url, "POST", {"schema": "EMAIL_SHA256", "data": rows}).json()
    assert (r["num_received"], r["num_invalid_entries"]) == (4, 3)
    assert set(r["invalid_entry_samples"]) == {"A@EXAMPLE.COM", h("ok").upper(), h("rejected")}
    assert meta.members(AUD) == {h("ok")}


@pytest.mark.parametrize("code", [17, 613])
def test_throttle_is_graph_error_not_429(code: int) -> None:
    with MetaStandin(MetaConfig(throttle_code=code)) as meta:
        meta.script(Fault("429"))
        r = _call(meta.url, "POST", {"schema": "EMAIL_SHA256", "data": [h("a")]})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["code"] == code and err["is_transient"] is True
        usage = json.loads(r.headers["X-Business-Use-Case-Usage"])
        assert next(iter(usage.values()))[0]["estimated_time_to_regain_access"] >= 1
        assert meta.members(AUD) == set()


def test_readd_is_set_semantics(meta: MetaStandin) -> None:
    meta.script(Fault("5xx", phase="after"))
    payload = {"schema": "EMAIL_SHA256", "data": [h("a")]}
    assert _call(meta.url, "POST", payload).status_code == 503
    assert _call(meta.url, "POST", payload).status_code == 200
    assert meta.members(AUD) == {h("a")}
