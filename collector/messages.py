"""Segment messages in, raw.events rows (or a quarantine reason) out.

Decisions, all following the Segment Spec unless noted:
- `type` comes from the path for single calls (/v1/track…) and from each message in /v1/batch.
- `messageId`: Segment SDKs always send one. When absent (hand-written HTTP calls) we derive it
  from the message's own content (sha256 of its canonical JSON without `sentAt`/`writeKey`), so
  a client's blind retry of the same payload deduplicates, where a random id would land twice.
- `timestamp` is corrected for client clock skew the way Segment does it:
  `timestamp = receivedAt - (sentAt - originalTimestamp)`, when the client sent `sentAt` (on the
  message or the batch); the client's own `originalTimestamp` (or `timestamp`) is used as is
  without `sentAt`, and receivedAt when there is no client time at all. Naive times are UTC.
- `integrations` and transport fields (`writeKey`, `sentAt`, `_metadata`…) are not data: dropped.
- page/screen `name` and `category` go into `properties` (raw.events has no column for them).
- group: `groupId` and the group's traits go into `properties` ({"groupId", "traits"}), not into
  `traits`: the models read `traits.email` as the person's email, and a group's traits describe
  the company.
- A message is refused (quarantined, with a reason) when it is not an object, has neither
  userId nor anonymousId, is a track without `event`, an alias without `previousId`, a group
  without `groupId`, has a non-object traits/properties/context, or an unreadable timestamp.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

TYPES = ("track", "identify", "page", "screen", "alias", "group")
_TRANSPORT_FIELDS = ("sentAt", "writeKey")


@dataclass(frozen=True)
class EventRow:
    """One raw.events row; `received_at` is stamped by the writer when the row lands."""

    message_id: str
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    previous_id: str | None
    traits: str | None  # JSON text
    properties: str | None  # JSON text
    context: str | None  # JSON text
    timestamp: datetime  # naive UTC


@dataclass(frozen=True)
class Rejection:
    """A message we will not land as an event, kept verbatim in quarantine with the reason."""

    reason: str
    payload: str  # the message (or body) as received, write keys removed
    message_id: str | None = None
    type: str | None = None


def dumps(value: Any) -> str:
    """Compact JSON text, the form stored in the landing files."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=False)


def _reject_constant(token: str) -> Any:
    raise ValueError(f"{token} is not valid JSON")


def loads(text: str | bytes) -> Any:
    """Strict JSON: NaN/Infinity would be written back as invalid JSON, so they are refused."""
    return json.loads(text, parse_constant=_reject_constant)


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 string to naive UTC; None when absent; ValueError when unreadable."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"not an ISO 8601 string: {value!r}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _identifier(value: Any, name: str) -> str | None:
    """SDKs stringify numeric ids (analytics-python's stringify_id); blanks mean absent."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _Invalid(f"invalid_{name}", f"{name} must be a string, got {type(value).__name__}")
    text = str(value).strip()
    return text or None


def _object(msg: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = msg.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _Invalid(f"invalid_{key}", f"{key} must be an object, got {type(value).__name__}")
    return value


class _Invalid(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = f"{reason}: {detail}"


def content_message_id(msg: dict[str, Any]) -> str:
    """Deterministic id for a message sent without one (see the module docstring)."""
    body = {k: v for k, v in msg.items() if k not in _TRANSPORT_FIELDS}
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return f"hw-{digest[:32]}"


def redacted(msg: Any) -> str:
    """The message as JSON text for quarantine, without the write key some SDKs put in it."""
    if isinstance(msg, dict) and "writeKey" in msg:
        msg = {k: v for k, v in msg.items() if k != "writeKey"}
    try:
        return dumps(msg)
    except (TypeError, ValueError):
        return repr(msg)


def normalize(
    msg: Any,
    *,
    path_type: str | None,
    sent_at: Any,
    received_at: datetime,
    max_bytes: int,
) -> EventRow | Rejection:
    """One Segment message to a row, or the reason it is refused.

    `path_type` is the call's type for single-call endpoints and None inside a batch; `sent_at`
    is the batch's sentAt (a message's own sentAt wins); `received_at` is naive UTC.
    """
    if not isinstance(msg, dict):
        return Rejection("not_an_object: a message must be a JSON object", redacted(msg))
    raw_id = msg.get("messageId")
    msg_type = path_type or msg.get("type")
    shown_id = (
        str(raw_id) if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    )
    shown_type = msg_type if isinstance(msg_type, str) else None
    try:
        size = len(dumps(msg).encode())
        if size > max_bytes:
            raise _Invalid("message_too_large", f"{size} bytes, the limit is {max_bytes}")
        return _row(msg, msg_type, sent_at, received_at)
    except _Invalid as exc:
        return Rejection(exc.reason, redacted(msg), shown_id, shown_type)


def _row(msg: dict[str, Any], msg_type: Any, sent_at: Any, received_at: datetime) -> EventRow:
    if msg_type not in TYPES:
        raise _Invalid("invalid_type", f"type must be one of {', '.join(TYPES)}, got {msg_type!r}")
    message_id = _identifier(msg.get("messageId"), "messageId") or content_message_id(msg)
    user_id = _identifier(msg.get("userId"), "userId")
    anonymous_id = _identifier(msg.get("anonymousId"), "anonymousId")
    if user_id is None and anonymous_id is None:
        raise _Invalid("missing_identity", "userId or anonymousId is required")
    traits = _object(msg, "traits")
    properties = _object(msg, "properties")
    context = _object(msg, "context")
    event: str | None = None
    previous_id: str | None = None
    if msg_type == "track":
        name = msg.get("event")
        if not isinstance(name, str) or not name.strip():
            raise _Invalid("missing_event", "a track call needs a non-empty event name")
        event = name
    elif msg_type == "alias":
        previous_id = _identifier(msg.get("previousId"), "previousId")
        if previous_id is None:
            raise _Invalid("missing_previous_id", "an alias call needs previousId")
    elif msg_type == "group":
        group_id = _identifier(msg.get("groupId"), "groupId")
        if group_id is None:
            raise _Invalid("missing_group_id", "a group call needs groupId")
        properties = {**(properties or {}), "groupId": group_id}
        if traits is not None:
            properties["traits"] = traits
            traits = None
    elif msg_type in ("page", "screen"):
        extra = {k: msg[k] for k in ("name", "category") if msg.get(k) is not None}
        if extra:
            properties = {**extra, **(properties or {})}
    return EventRow(
        message_id=message_id,
        type=msg_type,
        event=event,
        user_id=user_id,
        anonymous_id=anonymous_id,
        previous_id=previous_id,
        traits=None if traits is None else dumps(traits),
        properties=None if properties is None else dumps(properties),
        context=None if context is None else dumps(context),
        timestamp=_event_time(msg, sent_at, received_at),
    )


def _event_time(msg: dict[str, Any], batch_sent_at: Any, received_at: datetime) -> datetime:
    try:
        original = parse_time(msg.get("originalTimestamp")) or parse_time(msg.get("timestamp"))
    except (ValueError, OverflowError) as exc:
        raise _Invalid("invalid_timestamp", str(exc)) from exc
    if original is None:
        return received_at
    try:
        sent = parse_time(msg.get("sentAt")) or parse_time(batch_sent_at)
    except (ValueError, OverflowError):
        # sentAt is transport metadata: an unreadable one only costs the skew correction.
        sent = None
    if sent is None:
        return original
    try:
        return received_at - (sent - original)
    except OverflowError as exc:
        raise _Invalid("invalid_timestamp", f"skew correction overflows: {exc}") from exc
