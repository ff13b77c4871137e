"""Iterable (API 1.8): list subscribe/unsubscribe, bulk user updates, tracked events.

Contract (/work/shared/destinations.md §3.4, iterable_api_docs.json), header `Api-Key`:
- ADD: POST /api/lists/subscribe {listId, subscribers: [{email|userId, dataFields}]}.
- UPDATE: POST /api/users/bulkUpdate {users: [{email|userId, dataFields, preferUserId}]}.
- REMOVE: POST /api/lists/unsubscribe {listId, subscribers: [{email|userId}],
  channelUnsubscribe: false} — leaving the list only, never a channel-wide unsubscribe.
- SEND: POST /api/events/track {email|userId, eventName, id, dataFields}, one per record; `id`
  is the record's idempotency key ("if an event exists with that id, it will be updated"), so
  a resend after a lost answer does not double the event.

Per-record failures of the bulk calls come back by identifier grouped by reason
(`failedUpdates.{invalidEmails, invalidDataEmails, conflictEmails, notFoundUserIds, ...}`); each
record whose identifier is listed is REJECTED with that bucket name, except `notFound*` on
unsubscribe (a user Iterable does not know is not on the list: DELIVERED).

Batch size: Iterable documents a 4 MB body limit but no user count (destinations.md §3.4,
unverified); 1,000 per request keeps bodies small, and chunks are also split by size.
"""

from __future__ import annotations

import json
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
from activations.identifiers import normalize_email, normalize_phone_e164

MAX_USERS = 1_000
MAX_BODY_BYTES = 4 * 1024 * 1024 - 64 * 1024  # headroom under Iterable's 4 MB
IDENTITY_FIELDS = frozenset({"email", "external_id", "user_id"})


@dataclass(frozen=True)
class IterableOptions:
    """Settings for an Iterable sync, from DestinationConfig (options + credentials)."""

    api_key: str  # server-side API key (credential `api_key`); never logged
    list_id: int | None  # static list that ADD joins and REMOVE leaves (option)
    event_name: str  # event name for SEND (option; an `event_name` field overrides)
    prefer_user_id: bool  # identify by userId when both userId and email are mapped (option)
    default_phone_country: str  # region for `phone` values without a country code (option)

    @classmethod
    def from_config(cls, config: DestinationConfig) -> IterableOptions:
        api_key = config.credentials.get("api_key")
        if not api_key:
            raise DestinationConfigError(
                "iterable: set destination.credentials.api_key to the NAME of the environment "
                "variable holding a server-side API key"
            )
        o = config.options
        list_id = o.get("list_id")
        if list_id is not None and not str(list_id).isdigit():
            raise DestinationConfigError(
                f"iterable: destination.options.list_id must be Iterable's numeric list id, "
                f"not {list_id!r}"
            )
        return cls(
            api_key=api_key,
            list_id=int(list_id) if list_id is not None else None,
            event_name=str(o.get("event_name", "headwater_journey_step")),
            prefer_user_id=bool(o.get("prefer_user_id", False)),
            default_phone_country=str(o.get("default_phone_country", "US")),
        )


class IterableDestination:
    kind: ClassVar[str] = "iterable"
    channel: ClassVar[Channel | None] = Channel.EMAIL
    default_base_url: ClassVar[str | None] = "https://api.iterable.com"
    # bulkUpdate allows 5 requests/s per project, events/track 2,000/s; Iterable sends no
    # rate-limit headers, so 429s are retried by the HTTP layer rather than paced up front.
    default_rate_limit: ClassVar[tuple[float, int] | None] = None
    max_batch_size: ClassVar[int] = MAX_USERS
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.ADD, Action.UPDATE, Action.REMOVE, Action.SEND}
    )

    def __init__(self, config: DestinationConfig, http: HttpClient) -> None:
        self.options = IterableOptions.from_config(config)
        self.base_url = (config.base_url or "https://api.iterable.com").rstrip("/")
        self.http = http
        self._headers = {"Api-Key": self.options.api_key, "Content-Type": "application/json"}

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        if not records:
            return []
        action = records[0].action
        if action in (Action.ADD, Action.REMOVE) and self.options.list_id is None:
            raise DestinationConfigError(
                "iterable: list membership needs destination.options.list_id (numeric)"
            )
        if action == Action.SEND:
            return self._events(records)
        results: dict[str, RecordResult] = {}
        ready: list[tuple[Record, dict[str, Any]]] = []
        for r in records:
            user = self._user(r, with_fields=action != Action.REMOVE)
            if isinstance(user, str):
                results[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                          None, user)
            else:
                ready.append((r, user))
        for chunk in _chunks(ready):
            results.update(self._bulk(action, chunk))
        return [results[r.idempotency_key] for r in records]

    # -- mapping ---------------------------------------------------------------------------
    def _user(self, record: Record, with_fields: bool) -> dict[str, Any] | str:
        f = record.fields
        user: dict[str, Any] = {}
        if f.get("email") not in (None, ""):
            email = normalize_email(f["email"])
            if email is None:
                return "field email is not a valid email address"
            user["email"] = email
        uid = f.get("user_id", f.get("external_id"))
        if uid not in (None, ""):
            user["userId"] = str(uid)
            if self.options.prefer_user_id:
                user["preferUserId"] = True
        if "email" not in user and "userId" not in user:
            return "no identifier: map email or user_id (external_id) for Iterable"
        if with_fields:
            data = {k: v for k, v in f.items() if k not in IDENTITY_FIELDS}
            if "phone" in data and data["phone"] is not None:
                phone = normalize_phone_e164(data.pop("phone"), self.options.default_phone_country)
                if phone is None:
                    return "field phone is not a possible phone number"
                data["phoneNumber"] = phone  # Iterable's SMS field name
            if data:
                user["dataFields"] = data
        return user

    # -- bulk calls ------------------------------------------------------------------------
    def _bulk(self, action: Action, chunk: list[tuple[Record, dict[str, Any]]]
              ) -> dict[str, RecordResult]:
        users = [u for _, u in chunk]
        body: dict[str, Any]
        if action == Action.UPDATE:
            path, body = "/api/users/bulkUpdate", {"users": users}
        elif action == Action.ADD:
            path = "/api/lists/subscribe"
            body = {"listId": self.options.list_id, "subscribers": users,
                    "updateExistingUsersOnly": False}
        else:
            path = "/api/lists/unsubscribe"
            body = {"listId": self.options.list_id, "channelUnsubscribe": False,
                    "subscribers": [{k: v for k, v in u.items() if k in ("email", "userId")}
                                    for u in users]}
        resp = self._post(path, body)
        status, data = resp.status_code, _json(resp)
        if status >= 300:
            reason = f"iterable {status} {data.get('code')}: {data.get('msg') or resp.text[:300]}"
            return {r.idempotency_key: RecordResult(r.idempotency_key, Outcome.REJECTED, status,
                                                    reason) for r, _ in chunk}
        failed = _failures(data)
        out: dict[str, RecordResult] = {}
        for r, u in chunk:
            bucket = failed.get(("email", u["email"])) if "email" in u else None
            if bucket is None and "userId" in u:
                bucket = failed.get(("userId", u["userId"]))
            if bucket is None or (action == Action.REMOVE and bucket.startswith("notFound")):
                out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.DELIVERED,
                                                      status)
            else:
                out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                      status, f"iterable: {bucket}")
        return out

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        resp = self.http.request("POST", self.base_url + path, headers=self._headers,
                                 data=json.dumps(body, default=str).encode())
        if resp.status_code in (401, 403):
            raise DestinationAuthError(
                f"iterable refused the API key ({resp.status_code}): check the environment "
                "variable named in destination.credentials.api_key (server-side key)"
            )
        return resp

    # -- SEND ------------------------------------------------------------------------------
    def _events(self, records: Sequence[Record]) -> list[RecordResult]:
        return send_each(records, self._event)

    def _event(self, record: Record) -> RecordResult:
        user = self._user(record, with_fields=False)
        if isinstance(user, str):
            return RecordResult(record.idempotency_key, Outcome.REJECTED, None, user)
        fields = {k: v for k, v in record.fields.items() if k not in IDENTITY_FIELDS}
        name = fields.pop("event_name", None) or self.options.event_name
        created = fields.pop("created_at", None)
        body: dict[str, Any] = {**user, "eventName": str(name), "id": record.idempotency_key,
                                "dataFields": fields}
        if created is not None:
            body["createdAt"] = created
        resp = self._post("/api/events/track", body)
        data = _json(resp)
        if resp.status_code < 300 and data.get("code", "Success") == "Success":
            return RecordResult(record.idempotency_key, Outcome.DELIVERED, resp.status_code)
        return RecordResult(record.idempotency_key, Outcome.REJECTED, resp.status_code,
                            f"iterable {data.get('code')}: {data.get('msg') or resp.text[:300]}")


def _chunks(ready: list[tuple[Record, dict[str, Any]]]
            ) -> list[list[tuple[Record, dict[str, Any]]]]:
    """Split by user count and by serialized size (Iterable refuses bodies over 4 MB)."""
    chunks: list[list[tuple[Record, dict[str, Any]]]] = []
    current: list[tuple[Record, dict[str, Any]]] = []
    size = 0
    for item in ready:
        item_size = len(json.dumps(item[1], default=str)) + 1
        if current and (len(current) >= MAX_USERS or size + item_size > MAX_BODY_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(item)
        size += item_size
    if current:
        chunks.append(current)
    return chunks


def _failures(data: dict[str, Any]) -> dict[tuple[str, str], str]:
    """(email|userId, identifier) -> failure bucket, from failedUpdates and top-level lists."""
    out: dict[tuple[str, str], str] = {}
    buckets = dict(data.get("failedUpdates") or {})
    for top in ("invalidEmails", "invalidUserIds"):
        buckets.setdefault(top, data.get(top) or [])
    for bucket, idents in buckets.items():
        kind = "email" if bucket.endswith("Emails") else "userId"
        for ident in idents or []:
            key = str(ident).strip().lower() if kind == "email" else str(ident)
            out.setdefault((kind, key), bucket)
    return out


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
