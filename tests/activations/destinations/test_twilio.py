"""Twilio client against the Twilio stand-in (real HTTP on 127.0.0.1, spec-validated forms)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from activations.destinations.base import (
    Action,
    DestinationAuthError,
    DestinationConfig,
    DestinationConfigError,
    Outcome,
    Record,
    TransientDestinationError,
)
from activations.destinations.twilio import TwilioDestination
from activations.http import HttpClient, HttpSettings
from activations.standins.faults import Fault, FaultPlan
from activations.standins.twilio import TwilioConfig, TwilioStandin

CFG = TwilioConfig()


def fast_http(retries: int = 2) -> HttpClient:
    return HttpClient(HttpSettings(total_retries=retries, backoff_factor=0.0,
                                   backoff_jitter=0.0, retry_after_max=1))


@pytest.fixture
def twilio() -> Iterator[TwilioStandin]:
    with TwilioStandin() as standin:
        yield standin


def make(url: str, retries: int = 2, token: str = CFG.auth_token, **opts: Any) -> TwilioDestination:
    options = opts or {"from": "+15017122661"}
    creds = {"account_sid": CFG.account_sid, "auth_token": token}
    return TwilioDestination(DestinationConfig("twilio", url, creds, options), fast_http(retries))


def rec(n: int, phone: str, body: str = "Your cart misses you") -> Record:
    return Record(f"p{n}", Action.SEND, {"phone": phone, "body": body}, f"key-{n}")


def test_one_message_per_record_with_e164_and_key(twilio: TwilioStandin) -> None:
    results = make(twilio.url).send_batch([rec(1, "(650) 555-1212"), rec(2, "+442079460958")])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    sent = twilio.messages()
    assert [m["to"] for m in sent] == ["+16505551212", "+442079460958"]
    assert [r.external_id for r in results] == [m["sid"] for m in sent]
    assert twilio.deliveries_by_key() == {"key-1": 1, "key-2": 1}


def test_messaging_service_instead_of_from(twilio: TwilioStandin) -> None:
    service = "MG" + "0" * 32
    result = make(twilio.url, messaging_service_sid=service).send_batch([rec(1, "+16505551212")])
    assert result[0].outcome is Outcome.DELIVERED
    assert twilio.messages()[0]["messaging_service_sid"] == service


def test_vendor_rejection_keeps_code_and_reason(twilio: TwilioStandin) -> None:
    twilio.set_faults(FaultPlan(reject_ids=frozenset({"+16505551213"})))
    results = make(twilio.url).send_batch([rec(1, "+16505551212"), rec(2, "+16505551213")])
    assert results[0].outcome is Outcome.DELIVERED
    assert results[1].outcome is Outcome.REJECTED and results[1].status_code == 400
    assert (results[1].error or "").startswith("twilio 21610:")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"phone": "not a phone", "body": "x"}, "phone"), ({"phone": "+16505551212"}, "body")],
    ids=["bad_phone", "empty_body"],
)
def test_unsendable_records_rejected_locally(
    twilio: TwilioStandin, fields: dict[str, Any], reason: str
) -> None:
    result = make(twilio.url).send_batch([Record("p", Action.SEND, fields, "k")])[0]
    assert result.outcome is Outcome.REJECTED and reason in (result.error or "")
    assert twilio.request_log() == []


def test_429_is_retried_by_the_http_layer(twilio: TwilioStandin) -> None:
    twilio.script(Fault("429"), count=2)
    results = make(twilio.url, retries=3).send_batch([rec(1, "+16505551212")])
    assert results[0].outcome is Outcome.DELIVERED
    assert len(twilio.messages()) == 1


def test_429_beyond_retries_on_first_record_raises_transient(twilio: TwilioStandin) -> None:
    twilio.script(Fault("429"), count=10)
    with pytest.raises(TransientDestinationError, match="429"):
        make(twilio.url, retries=1).send_batch([rec(1, "+16505551212"), rec(2, "+16505551213")])
    assert twilio.messages() == []


def test_429_mid_batch_keeps_delivered_and_retries_rest() -> None:
    # One request per minute: the first message goes, the second is throttled past retries.
    with TwilioStandin(TwilioConfig(rate_limit=1, rate_window_seconds=60)) as twilio:
        results = make(twilio.url, retries=1).send_batch(
            [rec(1, "+16505551212"), rec(2, "+16505551213"), rec(3, "+16505551214")]
        )
        assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.RETRY, Outcome.RETRY]
        assert [m["to"] for m in twilio.messages()] == ["+16505551212"]


def test_answer_lost_after_send_does_not_duplicate(twilio: TwilioStandin) -> None:
    # The stand-in creates the message, then answers 503: the retry carries the same token.
    twilio.script(Fault("5xx", phase="after"))
    results = make(twilio.url, retries=2).send_batch([rec(1, "+16505551212")])
    assert results[0].outcome is Outcome.DELIVERED
    assert len(twilio.messages_to("+16505551212")) == 1
    assert twilio.deliveries_by_key() == {"key-1": 2}


def test_bad_credentials_raise_auth_error_without_the_secret(twilio: TwilioStandin) -> None:
    with pytest.raises(DestinationAuthError) as info:
        make(twilio.url, token="wrong-token").send_batch([rec(1, "+16505551212")])
    assert "wrong-token" not in str(info.value) and CFG.auth_token not in str(info.value)


def test_missing_sender_is_a_config_error() -> None:
    with pytest.raises(DestinationConfigError, match="messaging_service_sid"):
        TwilioDestination(DestinationConfig(
            "twilio", "http://127.0.0.1:9",
            {"account_sid": CFG.account_sid, "auth_token": CFG.auth_token}, {}), fast_http())
