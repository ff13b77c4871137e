"""Webhook stand-in: signature check, idempotent storage, faults before/after the state change."""

from __future__ import annotations

import json
import time

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.webhook import WebhookConfig, WebhookStandin, webhook_signature

SECRET = WebhookConfig().secret


def _post(url: str, body: dict, key: str | None = None, secret: str = SECRET,
          ts: int | None = None) -> requests.Response:
    raw = json.dumps(body).encode()
    headers = {"Content-Type": "application/json",
               "X-Headwater-Signature": webhook_signature(secret, raw, ts)}
    if key:
        headers["Idempotency-Key"] = key
    return requests.post(f"{url}/hooks/audience", data=raw, headers=headers, timeout=5)


@pytest.fixture
def hook():
    with WebhookStandin() as standin:
        yield standin


def test_happy_path_stores_message(hook: WebhookStandin) -> None:
    r = _post(hook.url, {"id": "p1", "action": "add"}, key="k1")
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    [m] = hook.messages()
    assert (m.key, m.path, m.body) == ("k1", "/hooks/audience", {"id": "p1", "action": "add"})


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"X-Headwater-Signature": "v1=abc"}, id="malformed"),
        pytest.param(
            {"X-Headwater-Signature": webhook_signature("wrong", b"{}")}, id="wrong-secret"
        ),
        pytest.param(
            {"X-Headwater-Signature": webhook_signature(SECRET, b"{}", int(time.time()) - 3600)},
            id="stale",
        ),
    ],
)
def test_bad_signature_is_401_and_not_stored(hook: WebhookStandin, headers: dict) -> None:
    r = requests.post(f"{hook.url}/x", data=b"{}", headers=headers, timeout=5)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_signature"
    assert hook.messages() == []


def test_signature_covers_the_body(hook: WebhookStandin) -> None:
    sig = webhook_signature(SECRET, b'{"id": "a"}')
    r = requests.post(f"{hook.url}/x", data=b'{"id": "b"}',
                      headers={"X-Headwater-Signature": sig}, timeout=5)
    assert r.status_code == 401


def test_replayed_key_answered_but_stored_once(hook: WebhookStandin) -> None:
    for _ in range(3):
        assert _post(hook.url, {"id": "p1"}, key="k1").status_code == 200
    assert _post(hook.url, {"id": "p2"}, key="k2").status_code == 200
    assert [m.key for m in hook.messages()] == ["k1", "k2"]
    assert hook.deliveries_by_key() == {"k1": 3, "k2": 1}
    assert hook.duplicates_stored() == []


@pytest.mark.parametrize("phase,stored", [("before", 0), ("after", 1)], ids=["before", "after"])
@pytest.mark.parametrize("kind", ["5xx", "drop", "timeout"])
def test_fault_phase_decides_whether_state_changed(kind: str, phase: str, stored: int) -> None:
    with WebhookStandin() as hook:
        hook.script(Fault(kind, phase=phase, timeout_seconds=0.5))  # type: ignore[arg-type]
        try:
            r = _post(hook.url, {"id": "p1"}, key="k1")
            assert kind == "5xx" and r.status_code == 503
        except requests.ConnectionError:
            assert kind in ("drop", "timeout")
        assert len(hook.messages()) == stored
        # The retry with the same key never creates a second message.
        assert _post(hook.url, {"id": "p1"}, key="k1").status_code == 200
        assert len(hook.messages()) == 1


def test_scripted_429_with_retry_after(hook: WebhookStandin) -> None:
    hook.script(Fault("429", retry_after=1), count=2)
    statuses = [_post(hook.url, {"id": "p"}, key="k").status_code for _ in range(3)]
    assert statuses == [429, 429, 200]
    hook.script(Fault("429", retry_after=1))
    assert _post(hook.url, {"id": "p"}, key="k").headers["Retry-After"] == "1"


def test_per_record_rejection(hook: WebhookStandin) -> None:
    hook.set_faults(FaultPlan(reject_ids=frozenset({"bad"})))
    r = _post(hook.url, {"id": "bad"}, key="k-bad")
    assert r.status_code == 422 and r.json()["error"] == "rejected"
    assert _post(hook.url, {"id": "good"}, key="k-good").status_code == 200
    assert [m.key for m in hook.messages()] == ["k-good"]


def test_random_faults_are_reproducible_with_a_seed() -> None:
    def run() -> list[int | None]:
        out: list[int | None] = []
        plan = FaultPlan(rate_429=0.3, rate_5xx=0.3, phase="before", seed=7)
        with WebhookStandin(faults=plan) as hook:
            for i in range(30):
                out.append(_post(hook.url, {"id": i}, key=f"k{i}").status_code)
        return out

    first = run()
    assert first == run()
    assert {200, 429, 503} <= set(first)
