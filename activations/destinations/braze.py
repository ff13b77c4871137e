"""Braze: audience membership as a custom array attribute, journey steps as custom events.

Contract (/work/shared/destinations.md §3.2, braze-docs post_user_track.md): POST /users/track
`{"attributes": [...], "events": [...]}`, at most 75 objects combined per request (the safe
reading of two documented limits), `Authorization: Bearer <REST API key>`. Each object names
its user by external_id, email or phone. Array attributes take `{"add": [...]}` /
`{"remove": [...]}`, which makes membership changes set operations: re-sending is harmless.

Mapping from Record.fields:
- identity: `external_id` (preferred), else `email`, else `phone`; email is lower-cased and
  phone put in E.164 before sending.
- ADD/UPDATE: one attributes object: identity, `first_name`/`last_name`/`email`/`phone` as
  Braze's standard fields, every other field as a custom attribute, plus
  `<audience_attribute>: {"add": [<audience>]}`.
- REMOVE: `<audience_attribute>: {"remove": [<audience>]}` with `_update_existing_only` (a
  removal must never create a user). Never /users/delete: leaving an audience is not erasure.
- SEND: one event `{name, time, properties}`; `event_name` field overrides the option, `time`
  field (ISO 8601) defaults to now. Braze has no event dedup key (destinations.md §4.3).

Per-record errors: Braze answers 201 with non-fatal `errors`; when an error carries
`input_array` + `index` (as the live API does) that record is REJECTED with the Braze reason.
Errors without an index cannot be attributed, so the batch stays DELIVERED with the text kept
in `error` (attribute writes are idempotent; rejecting blindly would dead-letter good rows).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
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
)
from activations.http import HttpClient
from activations.identifiers import normalize_email, normalize_phone_e164

MAX_OBJECTS = 75
STANDARD_FIELDS = {"first_name": "first_name", "last_name": "last_name"}
IDENTITY_FIELDS = frozenset({"external_id", "email", "phone"})


@dataclass(frozen=True)
class BrazeOptions:
    """Settings for a Braze sync, from DestinationConfig (options + credentials)."""

    api_key: str  # REST API key with users.track permission (credential `api_key`)
    audience_attribute: str  # custom array attribute holding audience names (option)
    audience: str | None  # this sync's audience name, added/removed in that array (option)
    event_name: str  # custom event name for SEND (option; a `event_name` field overrides)
    default_phone_country: str  # region for phone numbers without a country code (option)

    @classmethod
    def from_config(cls, config: DestinationConfig) -> BrazeOptions:
        api_key = config.credentials.get("api_key")
        if not api_key:
            raise DestinationConfigError(
                "braze: set destination.credentials.api_key to the NAME of the environment "
                "variable holding the REST API key (needs users.track)"
            )
        opts = config.options
        return cls(
            api_key=api_key,
            audience_attribute=str(opts.get("audience_attribute", "headwater_audiences")),
            audience=str(opts["audience"]) if opts.get("audience") else None,
            event_name=str(opts.get("event_name", "headwater_journey_step")),
            default_phone_country=str(opts.get("default_phone_country", "US")),
        )


class BrazeDestination:
    kind: ClassVar[str] = "braze"
    channel: ClassVar[Channel | None] = Channel.EMAIL
    default_base_url: ClassVar[str | None] = "https://rest.iad-01.braze.com"
    # /users/track allows 3,000 requests per 3 s; stay well inside and let headers pause us.
    default_rate_limit: ClassVar[tuple[float, int] | None] = (500.0, 50)
    max_batch_size: ClassVar[int] = MAX_OBJECTS
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.ADD, Action.UPDATE, Action.REMOVE, Action.SEND}
    )

    def __init__(self, config: DestinationConfig, http: HttpClient) -> None:
        self.options = BrazeOptions.from_config(config)
        self.base_url = (config.base_url or "https://rest.iad-01.braze.com").rstrip("/")
        self.http = http
        self._headers = {
            "Authorization": f"Bearer {self.options.api_key}",
            "Content-Type": "application/json",
        }

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        results: dict[str, RecordResult] = {}
        ready: list[tuple[Record, dict[str, Any]]] = []
        for record in records:
            obj = self._object(record)
            if isinstance(obj, str):
                results[record.idempotency_key] = RecordResult(
                    record.idempotency_key, Outcome.REJECTED, None, obj
                )
            else:
                ready.append((record, obj))
        for start in range(0, len(ready), MAX_OBJECTS):
            results.update(self._track(ready[start : start + MAX_OBJECTS]))
        return [results[r.idempotency_key] for r in records]

    # -- mapping ---------------------------------------------------------------------------
    def _identity(self, fields: Any) -> dict[str, Any] | str:
        ident: dict[str, Any] = {}
        if fields.get("external_id") not in (None, ""):
            ident["external_id"] = str(fields["external_id"])
        if fields.get("email") not in (None, ""):
            email = normalize_email(fields["email"])
            if email is None:
                return "field email is not a valid email address"
            ident["email"] = email
        if fields.get("phone") not in (None, ""):
            phone = normalize_phone_e164(fields["phone"], self.options.default_phone_country)
            if phone is None:
                return "field phone is not a possible phone number"
            ident["phone"] = phone
        if not ident:
            return "no identifier: map external_id, email or phone for Braze"
        return ident

    def _object(self, record: Record) -> dict[str, Any] | str:
        """The /users/track object for a record, or why it cannot be sent."""
        ident = self._identity(record.fields)
        if isinstance(ident, str):
            return ident
        extra = {k: v for k, v in record.fields.items() if k not in IDENTITY_FIELDS}
        if record.action == Action.SEND:
            name = extra.pop("event_name", None) or self.options.event_name
            time = extra.pop("time", None) or datetime.now(UTC).isoformat()
            props = extra.pop("properties", None)
            properties = dict(props) if isinstance(props, dict) else {}
            properties.update({k: v for k, v in extra.items() if k not in STANDARD_FIELDS})
            return {**ident, "name": str(name), "time": str(time), "properties": properties}
        attr = self.options.audience_attribute
        if record.action == Action.REMOVE:
            if not self.options.audience:
                raise DestinationConfigError(
                    "braze: mirror mode needs destination.options.audience (the value to remove "
                    f"from the {attr!r} array attribute)"
                )
            # Only touch users Braze already has: a removal must not create a profile.
            return {**ident, attr: {"remove": [self.options.audience]},
                    "_update_existing_only": True}
        obj: dict[str, Any] = {**ident}
        for name, value in extra.items():
            obj[STANDARD_FIELDS.get(name, name)] = value
        if self.options.audience:
            obj[attr] = {"add": [self.options.audience]}
        return obj

    # -- request ---------------------------------------------------------------------------
    def _track(self, chunk: list[tuple[Record, dict[str, Any]]]) -> dict[str, RecordResult]:
        array = "events" if chunk[0][0].action == Action.SEND else "attributes"
        body = {array: [obj for _, obj in chunk]}
        records = [r for r, _ in chunk]
        response = self.http.request(
            "POST", f"{self.base_url}/users/track", headers=self._headers,
            data=json.dumps(body, default=str).encode(),
        )
        status = response.status_code
        data = _json(response)
        if status in (401, 403):
            raise DestinationAuthError(
                f"braze refused the REST API key ({status}): check the environment variable "
                "named in destination.credentials.api_key and its users.track permission"
            )
        if status >= 300:  # fatal: nothing in the request was processed
            reason = f"braze {status}: {data.get('message') or response.text[:300]}"
            if data.get("errors"):
                reason += f" ({_text(data['errors'])})"
            return {r.idempotency_key: RecordResult(r.idempotency_key, Outcome.REJECTED, status,
                                                    reason) for r in records}
        indexed: dict[int, str] = {}
        loose: list[Any] = []
        for err in data.get("errors") or []:
            if isinstance(err, dict) and err.get("input_array") == array \
                    and isinstance(err.get("index"), int) and 0 <= err["index"] < len(records):
                indexed[err["index"]] = str(err.get("type") or err)
            else:
                loose.append(err)
        note = f"braze reported unattributed errors: {_text(loose)}" if loose else None
        out = {r.idempotency_key: RecordResult(r.idempotency_key, Outcome.DELIVERED, status, note)
               for r in records}
        for index, reason in indexed.items():
            key = records[index].idempotency_key
            out[key] = RecordResult(key, Outcome.REJECTED, status, f"braze: {reason}")
        return out


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _text(errors: Any) -> str:
    return json.dumps(errors, default=str)[:500]

