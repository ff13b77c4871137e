"""Twilio client against a real HTTP receiver that checks the CreateMessage contract."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from activations.destinations.base import (
    Action,
    DestinationConfig,
    DestinationConfigError,
    Outcome,
    Record,
    TransientDestinationError,
)
from activations.destinations.twilio import TwilioDestination

SID = "AC" + "0123456789abcdef" * 2
TOKEN = "twilio-secret-token"
# Twilio's error JSON (destinations.md §3.6): {code, message, more_info, status}.
ERRORS = {
    "+15005550001": (400, 21211, "The 'To' number +15005550001 is not a valid phone number."),
    "+15005550002": (400, 21610, "Attempt to send to unsubscribed recipient"),
}


def twilio_responder(throttle_to: set[str] | None = None):  # type: ignore[no-untyped-def]
    throttle_to = throttle_to or set()
    count = {"n": 0}

    def respond(req: Any) -> tuple[int, Any, dict[str, str]]:
        expected_auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        if req.header("authorization") != expected_auth:
            return 401, {"code": 20003, "message": "Authenticate", "status": 401}, {}
        assert req.method == "POST"
        assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
        assert req.header("content-type") == "application/x-www-form-urlencoded"
        form = {k: v[0] for k, v in req.form().items()}
        # Cross-field rules the spec does not encode: To, one sender, one content.
        assert form["To"].startswith("+") and form["To"][1:].isdigit()
        assert ("From" in form) != ("MessagingServiceSid" in form)
        assert form.get("Body")
        if form["To"] in throttle_to:
            return 429, {"code": 20429, "message": "Too Many Requests", "status": 429}, {}
        if form["To"] in ERRORS:
            status, code, message = ERRORS[form["To"]]
            more = f"https://www.twilio.com/docs/errors/{code}"
            return status, {"code": code, "message": message, "more_info": more,
                            "status": status}, {}
        count["n"] += 1
        sid = f"SM{count['n']:032d}"
        return 201, {"sid": sid, "status": "queued", "to": form["To"], "body": form["Body"]}, {}

    return respond


def make(url: str, **options: Any) -> TwilioDestination:
    opts = {"from": "+15017122661", **options}
    creds = {"account_sid": SID, "auth_token": TOKEN}
    return TwilioDestination(DestinationConfig("twilio", url, creds, opts))


def rec(n: int, phone: str, body: str = "Hi there") -> Record:
    return Record(f"p{n}", Action.SEND, {"phone": phone, "body": body}, f"key-{n}")


def test_sends_one_form_request_per_record(receiver) -> None:  # type: ignore[no-untyped-def]
    server = receiver(twilio_responder())
    results = make(server.url).send_batch([rec(1, "(650) 555-1212"), rec(2, "+442079460958")])
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.DELIVERED]
    assert results[0].external_id and results[0].external_id.startswith("SM")
    sent = [r.form() for r in server.requests]
    assert [f["To"] for f in sent] == [["+16505551212"], ["+442079460958"]]
    assert [r.header("i-twilio-idempotency-token") for r in server.requests] == ["key-1", "key-2"]


def test_messaging_service_instead_of_from(receiver) -> None:  # type: ignore[no-untyped-def]
    server = receiver(twilio_responder())
    dest = TwilioDestination(DestinationConfig(
        "twilio", server.url, {"account_sid": SID, "auth_token": TOKEN},
        {"messaging_service_sid": "MG" + "0" * 32}))
    assert dest.send_batch([rec(1, "+16505551212")])[0].outcome is Outcome.DELIVERED
    assert server.requests[0].form()["MessagingServiceSid"] == ["MG" + "0" * 32]


@pytest.mark.parametrize(
    ("phone", "code"),
    [("+15005550001", 21211), ("+15005550002", 21610)],
    ids=["invalid_to_21211", "unsubscribed_21610"],
)
def test_vendor_rejection_keeps_code_and_reason(receiver, phone: str, code: int) -> None:  # type: ignore[no-untyped-def]
    server = receiver(twilio_responder())
    results = make(server.url).send_batch([rec(1, "+16505551212"), rec(2, phone)])
    assert results[0].outcome is Outcome.DELIVERED
    assert results[1].outcome is Outcome.REJECTED
    assert results[1].status_code == 400
    assert results[1].error and results[1].error.startswith(f"twilio {code}:")


@pytest.mark.parametrize(
    ("fields", "reason"),
    [({"phone": "not a phone", "body": "x"}, "phone"), ({"phone": "+16505551212"}, "body")],
    ids=["bad_phone", "empty_body"],
)
def test_unsendable_records_rejected_locally(receiver, fields, reason) -> None:  # type: ignore[no-untyped-def]
    server = receiver(twilio_responder())
    result = make(server.url).send_batch([Record("p", Action.SEND, fields, "k")])[0]
    assert result.outcome is Outcome.REJECTED and reason in (result.error or "")
    assert server.requests == []


def test_429_first_raises_transient(receiver) -> None:  # type: ignore[no-untyped-def]
    server = receiver(twilio_responder(throttle_to={"+16505551212"}))
    with pytest.raises(TransientDestinationError, match="20429"):
        make(server.url).send_batch([rec(1, "+16505551212"), rec(2, "+16505551213")])
    assert len(server.requests) == 1  # stops at the throttle instead of hammering


def test_429_mid_batch_keeps_delivered_and_retries_rest(receiver) -> None:  # type: ignore[no-untyped-def]
    server = receiver(twilio_responder(throttle_to={"+16505551213"}))
    results = make(server.url).send_batch(
        [rec(1, "+16505551212"), rec(2, "+16505551213"), rec(3, "+16505551214")]
    )
    assert [r.outcome for r in results] == [Outcome.DELIVERED, Outcome.RETRY, Outcome.RETRY]
    assert len(server.requests) == 2


def test_bad_credentials_are_a_config_error_without_the_secret(receiver) -> None:  # type: ignore[no-untyped-def]
    server = receiver(twilio_responder())
    dest = TwilioDestination(DestinationConfig(
        "twilio", server.url, {"account_sid": SID, "auth_token": "wrong"},
        {"from": "+15017122661"}))
    with pytest.raises(DestinationConfigError) as info:
        dest.send_batch([rec(1, "+16505551212")])
    assert "wrong" not in str(info.value) and TOKEN not in str(info.value)


def test_missing_sender_is_a_config_error() -> None:
    with pytest.raises(DestinationConfigError, match="messaging_service_sid"):
        TwilioDestination(DestinationConfig(
            "twilio", "http://127.0.0.1:9", {"account_sid": SID, "auth_token": TOKEN}, {}))
