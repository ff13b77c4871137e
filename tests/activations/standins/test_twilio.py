"""Twilio Messages stand-in against its contract (destinations.md 3.6)."""

from __future__ import annotations

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.twilio import TwilioConfig, TwilioStandin

CFG = TwilioConfig()
AUTH = (CFG.account_sid, CFG.auth_token)
MG = "MG" + "a" * 32


@pytest.fixture
def tw():
    with TwilioStandin() as standin:
        yield standin


def _send(url: str, data: dict, auth=AUTH, headers: dict | None = None,
          account: str = CFG.account_sid) -> requests.Response:
    return requests.post(f"{url}/2010-04-01/Accounts/{account}/Messages.json", data=data,
                         auth=auth, headers=headers or {}, timeout=5)


def test_happy_path_creates_message(tw: TwilioStandin) -> None:
    r = _send(tw.url, {"To": "+15551234567", "From": "+15557654321", "Body": "Hi"})
    assert r.status_code == 201
    msg = r.json()
    assert msg["sid"].startswith("SM") and len(msg["sid"]) == 34
    assert (msg["to"], msg["body"], msg["status"], msg["direction"]) == (
        "+15551234567", "Hi", "queued", "outbound-api")
    r2 = _send(tw.url, {"To": "+15551234567", "MessagingServiceSid": MG, "Body": "Yo"})
    assert r2.status_code == 201 and r2.json()["status"] == "accepted"
    assert [m["body"] for m in tw.messages_to("+15551234567")] == ["Hi", "Yo"]


@pytest.mark.parametrize(
    "auth,account",
    [(None, CFG.account_sid), (("AC" + "f" * 32, "x"), CFG.account_sid),
     (AUTH, "AC" + "e" * 32)],
    ids=["missing", "wrong-token", "other-account"],
)
def test_auth_401_shape(tw: TwilioStandin, auth, account: str) -> None:
    r = _send(tw.url, {"To": "+15551234567", "From": "+15557654321", "Body": "Hi"},
              auth=auth, account=account)
    assert r.status_code == 401
    assert r.json() == {"code": 20003, "message": "Authenticate",
                        "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}
    assert tw.messages() == []


@pytest.mark.parametrize(
    "data,code",
    [
        pytest.param({"From": "+15557654321", "Body": "x"}, 21604, id="no-to"),
        pytest.param({"To": "12345", "From": "+15557654321", "Body": "x"}, 21211, id="bad-to"),
        pytest.param({"To": "+15551234567", "Body": "x"}, 21603, id="no-from"),
        pytest.param({"To": "+15551234567", "From": "+15557654321"}, 21602, id="no-body"),
        pytest.param({"To": "+15551234567", "From": "+1555", "Body": "x" * 1601}, 21617,
                     id="body-too-long"),
    ],
)
def test_business_rules(tw: TwilioStandin, data: dict, code: int) -> None:
    r = _send(tw.url, data)
    assert r.status_code == 400 and r.json()["code"] == code
    assert set(r.json()) == {"code", "message", "more_info", "status"}


@pytest.mark.parametrize(
    "extra",
    [{"ValidityPeriod": "abc"}, {"MessagingServiceSid": "MGnope"}, {"SendAsMms": "maybe"}],
    ids=["validity-not-int", "service-sid-pattern", "bool-field"],
)
def test_spec_validation(specs_available, tw: TwilioStandin, extra: dict) -> None:
    r = _send(tw.url, {"To": "+15551234567", "From": "+15557654321", "Body": "x", **extra})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 20001 and next(iter(extra)) in body["message"]
    assert tw.messages() == []


def test_429_twilio_shape(tw: TwilioStandin) -> None:
    tw.script(Fault("429"))
    r = _send(tw.url, {"To": "+15551234567", "From": "+15557654321", "Body": "x"})
    assert r.status_code == 429 and r.json()["code"] == 20429
    assert "Twilio-Concurrent-Requests" in r.headers and "Retry-After" not in r.headers
    tw.script(Fault("429", retry_after=2))
    r = _send(tw.url, {"To": "+15551234567", "From": "+15557654321", "Body": "x"})
    assert r.headers["Retry-After"] == "2"
    assert tw.messages() == []


def test_per_record_rejection(tw: TwilioStandin) -> None:
    tw.set_faults(FaultPlan(reject_ids=frozenset({"+15550000000"})))
    r = _send(tw.url, {"To": "+15550000000", "From": "+15557654321", "Body": "x"})
    assert r.status_code == 400 and r.json()["code"] == 21610


@pytest.mark.parametrize("honour,expected", [(True, 1), (False, 2)], ids=["honoured", "ignored"])
def test_idempotency_token_after_lost_answer(honour: bool, expected: int) -> None:
    with TwilioStandin(TwilioConfig(honour_idempotency_token=honour)) as tw:
        tw.script(Fault("drop", phase="after"))
        data = {"To": "+15551234567", "From": "+15557654321", "Body": "x"}
        headers = {"I-Twilio-Idempotency-Token": "send-1"}
        with pytest.raises(requests.ConnectionError):
            _send(tw.url, data, headers=headers)
        r = _send(tw.url, data, headers=headers)
        assert r.status_code == 201
        assert len(tw.messages()) == expected
        if honour:
            assert r.json()["sid"] == tw.messages()[0]["sid"]
            assert tw.deliveries_by_key() == {"send-1": 2}
