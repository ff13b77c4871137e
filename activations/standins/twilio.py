"""Twilio Programmable Messaging (2010-04-01 Messages) stand-in.

Contract: /work/shared/destinations.md section 3.6 and `twilio_api_v2010.json`. The spec encodes
only `To` as required; the real API's cross-field rules (From or MessagingServiceSid; Body,
MediaUrl or ContentSid) are enforced here by hand. `I-Twilio-Idempotency-Token` is unverified for
outbound requests, so honouring it is a switch (default on) to test both behaviours.
"""

from __future__ import annotations

import base64
import contextlib
import re
import secrets
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any

from activations.standins.core import Request, Response, Route, Standin, StandinConfig
from activations.standins.core import json_response as _json
from activations.standins.faults import Fault
from activations.standins.specs import body_schema_ref

PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
CREATE = body_schema_ref(
    "twilio_api_v2010.json", PATH, "post", "application/x-www-form-urlencoded"
)
IDEMPOTENCY_HEADER = "I-Twilio-Idempotency-Token"
E164 = re.compile(r"^(whatsapp:)?\+[1-9]\d{6,14}$")
# Form fields whose schema type is not string: converted before validation (as Twilio parses).
_INTS = {"Attempt", "ValidityPeriod"}
_BOOLS = {"ProvideFeedback", "ForceDelivery", "SmartEncoded", "ShortenUrls", "SendAsMms"}
_NUMBERS = {"MaxPrice"}
_ARRAYS = {"MediaUrl", "PersistentAction"}


@dataclass
class TwilioConfig(StandinConfig):
    account_sid: str = "AC" + "0" * 31 + "1"
    auth_token: str = "headwater-test-token"
    honour_idempotency_token: bool = True
    max_body_chars: int = 1600


def twilio_error(status: int, code: int, message: str) -> Response:
    return _json(status, {"code": code, "message": message,
                          "more_info": f"https://www.twilio.com/docs/errors/{code}",
                          "status": status})


class TwilioStandin(Standin):
    name = "twilio"
    config: TwilioConfig

    def __init__(self, config: TwilioConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._messages: list[dict[str, Any]] = []
        self._by_token: dict[str, dict[str, Any]] = {}
        self._token_requests: dict[str, int] = {}

    @classmethod
    def default_config(cls) -> TwilioConfig:
        return TwilioConfig()

    def routes(self) -> list[Route]:
        return [Route.of("POST", PATH, self._create)]

    # ---- inspection --------------------------------------------------------------------------
    def messages(self) -> list[dict[str, Any]]:
        """Every message created, in order (a duplicate send shows up twice)."""
        with self.lock:
            return [dict(m) for m in self._messages]

    def messages_to(self, to: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m["to"] == to]

    def deliveries_by_key(self) -> dict[str, int]:
        """Requests per idempotency token (retries included)."""
        with self.lock:
            return dict(self._token_requests)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {"standin": self.name, "messages": [dict(m) for m in self._messages],
                    "deliveries_by_key": dict(self._token_requests)}

    # ---- vendor answers ----------------------------------------------------------------------
    def authenticate(self, req: Request) -> Response | None:
        header = req.header("Authorization") or ""
        expected = base64.b64encode(
            f"{self.config.account_sid}:{self.config.auth_token}".encode()
        ).decode()
        account = req.params.get("AccountSid")
        if header == f"Basic {expected}" and account == self.config.account_sid:
            return None
        response = twilio_error(401, 20003, "Authenticate")
        response.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
        return response

    def throttled(self, fault: Fault) -> Response:
        response = twilio_error(429, 20429, "Too Many Requests")
        response.headers["Twilio-Concurrent-Requests"] = "101"
        if fault.retry_after is not None:  # only third parties claim Twilio sends it
            response.headers["Retry-After"] = str(max(0, round(fault.retry_after)))
        return response

    def server_error(self, fault: Fault) -> Response:
        return twilio_error(fault.status, 20500, "Internal Server Error")

    def _create(self, req: Request) -> Response:
        content_type = (req.header("Content-Type") or "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            return twilio_error(
                400, 20001, "Content-Type must be application/x-www-form-urlencoded"
            )
        try:
            form = _coerce(req.form())
        except UnicodeDecodeError:
            return twilio_error(400, 20001, "body is not UTF-8")
        # Twilio's own codes for the rules it documents come first, the schema's after.
        problem = self._business_rules(form)
        if problem is not None:
            return problem
        violations = self.violations(CREATE, form)
        if violations:
            v = violations[0]
            return twilio_error(400, 20001, f"Invalid parameter `{v.field}`: {v.message}")
        token = req.header(IDEMPOTENCY_HEADER) if self.config.honour_idempotency_token else None
        with self.lock:
            if token is not None:
                self._token_requests[token] = self._token_requests.get(token, 0) + 1
                if token in self._by_token:
                    return _json(201, self._by_token[token])
            if self.faults.rejects(form.get("To"), token):
                return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
            message = self._message(form)
            self._messages.append(message)
            if token is not None:
                self._by_token[token] = message
        return _json(201, message)

    def _business_rules(self, form: dict[str, Any]) -> Response | None:
        to = form.get("To")
        if not to:
            return twilio_error(400, 21604, "A 'To' phone number is required.")
        if not E164.match(str(to)):
            return twilio_error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
        if not form.get("From") and not form.get("MessagingServiceSid"):
            return twilio_error(400, 21603, "A 'From' phone number is required.")
        if not (form.get("Body") or form.get("MediaUrl") or form.get("ContentSid")):
            return twilio_error(400, 21602, "Message body is required.")
        if len(str(form.get("Body") or "")) > self.config.max_body_chars:
            return twilio_error(400, 21617, "The concatenated message body exceeds the 1600 "
                                "character limit.")
        return None

    def _message(self, form: dict[str, Any]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        body = str(form.get("Body") or "")
        account = self.config.account_sid
        now = formatdate(usegmt=True).replace("GMT", "+0000")
        return {
            "account_sid": account, "api_version": "2010-04-01", "body": body,
            "date_created": now, "date_sent": None, "date_updated": now,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": form.get("From"), "messaging_service_sid": form.get("MessagingServiceSid"),
            "num_media": str(len(form.get("MediaUrl") or [])),
            "num_segments": str(max(1, -(-len(body) // 153) if len(body) > 160 else 1)),
            "price": None, "price_unit": "USD", "sid": sid,
            "status": "accepted" if form.get("MessagingServiceSid") else "queued",
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json"
            },
            "to": form.get("To"), "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }


def _coerce(form: dict[str, list[str]]) -> dict[str, Any]:
    """Form values as the schema types them; unparseable values stay strings (and fail)."""
    out: dict[str, Any] = {}
    for key, values in form.items():
        if key in _ARRAYS:
            out[key] = values
            continue
        value: Any = values[-1]
        if key in _INTS and re.fullmatch(r"-?\d+", value):
            value = int(value)
        elif key in _NUMBERS:
            with contextlib.suppress(ValueError):
                value = float(value)
        elif key in _BOOLS and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        out[key] = value
    return out
