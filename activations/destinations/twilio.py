"""Twilio Programmable Messaging: one SMS per record.

Contract (/work/shared/destinations.md §3.6, twilio_api_v2010.json `CreateMessage`):
POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json, form-encoded, HTTP Basic
AccountSid:AuthToken, fields To (E.164), From or MessagingServiceSid, Body. 201 -> Message JSON
with `sid`; errors are JSON {code, message, more_info, status}. 429 with code 20429 means "not
processed, safe to retry". There is no bulk send: one request per message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from activations.destinations.base import (
    Action,
    Channel,
    DestinationAuthError,
    DestinationConfig,
    DestinationConfigError,
    Outcome,
    Record,
    RecordResult,
    send_each,
)
from activations.http import HttpClient
from activations.identifiers import normalize_phone_e164

# Twilio codes meaning "this recipient/message can never go as is" are plain 4xx and end up
# REJECTED; these are the ones that mean "the account, not the record, is the problem".
_AUTH_CODES = frozenset({20003, 20005})


@dataclass(frozen=True)
class TwilioOptions:
    """Settings for a Twilio sync, from DestinationConfig (options + credentials)."""

    account_sid: str  # AC... account; also the Basic-auth user (credential `account_sid`)
    auth_token: str  # Basic-auth password (credential `auth_token`); never logged
    from_number: str | None  # E.164 sender (option `from`); this or messaging_service_sid
    messaging_service_sid: str | None  # MG... service (option `messaging_service_sid`)
    status_callback: str | None  # URL Twilio posts delivery status to (option)
    default_phone_country: str  # region for numbers without a country code (option)

    @classmethod
    def from_config(cls, config: DestinationConfig) -> TwilioOptions:
        creds, opts = config.credentials, config.options
        sid, token = creds.get("account_sid", ""), creds.get("auth_token", "")
        if not sid or not token:
            raise DestinationConfigError(
                "twilio needs credentials account_sid and auth_token "
                "(set HEADWATER_TWILIO_ACCOUNT_SID / HEADWATER_TWILIO_AUTH_TOKEN)"
            )
        sender, service = opts.get("from"), opts.get("messaging_service_sid")
        if not sender and not service:
            raise DestinationConfigError(
                "twilio needs option `from` (an E.164 number) or `messaging_service_sid`"
            )
        return cls(
            account_sid=sid,
            auth_token=token,
            from_number=str(sender) if sender else None,
            messaging_service_sid=str(service) if service else None,
            status_callback=opts.get("status_callback"),
            default_phone_country=str(opts.get("default_phone_country", "US")),
        )


class TwilioDestination:
    """SMS through Twilio; SEND only (a message is an append, never a membership)."""

    kind: ClassVar[str] = "twilio"
    channel: ClassVar[Channel | None] = Channel.SMS
    default_base_url: ClassVar[str | None] = "https://api.twilio.com"
    # Twilio limits concurrency (20429), not a published rate; the HTTP layer retries 429s.
    default_rate_limit: ClassVar[tuple[float, int] | None] = None
    # One request per message; this only bounds how many the engine hands over at once.
    max_batch_size: ClassVar[int] = 100
    supported_actions: ClassVar[frozenset[Action]] = frozenset({Action.SEND})

    def __init__(self, config: DestinationConfig, http: HttpClient) -> None:
        self.options = TwilioOptions.from_config(config)
        self._url = (
            f"{(config.base_url or 'https://api.twilio.com').rstrip('/')}/2010-04-01/Accounts/"
            f"{self.options.account_sid}/Messages.json"
        )
        self.http = http

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        # Twilio has no bulk send: one message, one request.
        return send_each(records, self._send_one)

    def _form(self, record: Record) -> dict[str, Any] | str:
        """The CreateMessage form, or the reason the record cannot be sent."""
        fields = record.fields
        to = normalize_phone_e164(fields.get("phone"), self.options.default_phone_country)
        if to is None:
            return "field phone is missing or not a possible phone number"
        body = fields.get("body", fields.get("message"))
        media = fields.get("media_url")
        if not body and not media:
            return "field body (the rendered message) is empty and there is no media_url"
        form: dict[str, Any] = {"To": to}
        if self.options.messaging_service_sid:
            form["MessagingServiceSid"] = self.options.messaging_service_sid
        else:
            form["From"] = self.options.from_number
        if body:
            form["Body"] = str(body)
        if media:
            form["MediaUrl"] = list(media) if isinstance(media, list | tuple) else [media]
        if self.options.status_callback:
            form["StatusCallback"] = self.options.status_callback
        return form

    def _send_one(self, record: Record) -> RecordResult:
        form = self._form(record)
        if isinstance(form, str):
            return RecordResult(record.idempotency_key, Outcome.REJECTED, None, form)
        # I-Twilio-Idempotency-Token is NOT in Twilio's OpenAPI nor in any official page we
        # found for outbound requests (destinations.md §0.5): sent in case Twilio honours it.
        # The real guarantee against duplicate texts is the engine's outbox key.
        headers = {"I-Twilio-Idempotency-Token": record.idempotency_key}
        # 429 (code 20429, "not processed, safe to retry") and 5xx are retried by the HTTP
        # layer and surface as TransientDestinationError once its budget is spent.
        resp = self.http.request(
            "POST",
            self._url,
            data=form,
            headers=headers,
            auth=(self.options.account_sid, self.options.auth_token),
        )
        status = resp.status_code
        if status in (200, 201):
            sid = _json(resp).get("sid")
            return RecordResult(record.idempotency_key, Outcome.DELIVERED, status, None, sid)
        err = _json(resp)
        code, message = err.get("code"), err.get("message") or resp.reason
        if status in (401, 403) or code in _AUTH_CODES:
            raise DestinationAuthError(
                f"twilio refused the credentials (HTTP {status}, code {code}): check "
                "HEADWATER_TWILIO_ACCOUNT_SID and HEADWATER_TWILIO_AUTH_TOKEN"
            )
        # 21211 invalid To, 21610 recipient replied STOP, 21408 region not enabled, ...
        return RecordResult(
            record.idempotency_key, Outcome.REJECTED, status, f"twilio {code}: {message}"
        )


def _json(resp: Any) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
