"""The contract between the sync engine and a destination client.

The engine decides *what* to send (the diff, consent, templates, idempotency keys) and records
outcomes; a destination only knows *how* its vendor wants it: request shapes, batch limits,
identifier normalization and hashing, and how to read per-record errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol


class Channel(StrEnum):
    """The consent channel a destination reaches; the engine's consent gate reads it."""

    EMAIL = "email"  # gated by customer_profiles.email_consent
    SMS = "sms"  # gated by sms_consent
    ADS = "ads"  # gated by ads_consent
    NONE = "none"  # reaches no person directly (internal webhooks): no gate


class Action(StrEnum):
    """What a record asks the destination to do."""

    ADD = "add"  # a new member of the audience (upsert + add to list/audience)
    UPDATE = "update"  # a member whose mapped fields changed
    REMOVE = "remove"  # no longer a member (mirror mode)
    SEND = "send"  # append mode: an event or a message (journey steps, SMS, webhooks)


class Outcome(StrEnum):
    """How one record fared."""

    DELIVERED = "delivered"  # the vendor accepted it
    REJECTED = "rejected"  # the vendor refused this record; retried next run, dead-lettered after N
    RETRY = "retry"  # not attempted or transient; safe to send again with the same key


@dataclass(frozen=True)
class Record:
    """One row of a diff, mapped to the destination's fields."""

    profile_id: str
    action: Action
    # Destination field name -> value, after mapping and templates (identifiers in plain text:
    # the destination normalizes and hashes as its vendor requires).
    fields: Mapping[str, Any]
    # Stable across retries and crashes: the same record always carries the same key.
    idempotency_key: str


@dataclass(frozen=True)
class RecordResult:
    """The destination's answer for one record."""

    idempotency_key: str
    outcome: Outcome
    status_code: int | None = None
    # The vendor's reason, verbatim where it gives one (never a credential).
    error: str | None = None
    # The vendor's id for what was created (Twilio message SID, Klaviyo profile id...).
    external_id: str | None = None


@dataclass(frozen=True)
class DestinationConfig:
    """Where and how to reach a destination; secrets come from the environment."""

    # Destination kind, e.g. "sendgrid"; selects the client module.
    kind: str
    # API root; HEADWATER_<KIND>_BASE_URL overrides it (tests point it at a local stand-in).
    base_url: str
    # Credentials by name (api_key, account_sid, auth_token...), read from the environment.
    # repr=False: a config printed in a traceback or log never shows a secret.
    credentials: Mapping[str, str] = field(default_factory=dict, repr=False)
    # Vendor-specific settings (list id, audience id, customer id, from number...).
    options: Mapping[str, Any] = field(default_factory=dict)


class Destination(Protocol):
    """A vendor client. Implementations live in activations/destinations/<vendor>.py.

    Construction: `Cls(config: DestinationConfig, http: activations.http.HttpClient)`; raise
    DestinationConfigError from the constructor for missing options or credentials. Send every
    request through `http` (retries, backoff, Retry-After, rate limits live there), and register
    the class in `activations/destinations/__init__.py`.
    """

    # Largest batch the vendor's contract allows for one request.
    max_batch_size: ClassVar[int]
    # Actions this destination supports; the engine refuses a sync that asks for others.
    supported_actions: ClassVar[frozenset[Action]]
    # The consent channel; None = the sync must declare `channel:` itself (generic webhooks).
    channel: ClassVar[Channel | None]
    # The vendor's public API root; syncs.yml `base_url` and HEADWATER_<KIND>_BASE_URL override.
    default_base_url: ClassVar[str | None]
    # Requests per second and burst used when the sync declares no `rate_limit`.
    default_rate_limit: ClassVar[tuple[float, int] | None]

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        """Deliver a batch (at most max_batch_size, one action), one result per record.

        Transient whole-request failures that survive the HTTP layer's retries raise
        `TransientDestinationError`; the engine leaves those records pending for the next run.
        A record's answer is DELIVERED only when the vendor accepted it; a vendor refusal of the
        record (bad email, invalid payload) is REJECTED with the vendor's reason. Pass
        `idempotency_key` to vendors that deduplicate on one (it is stable across crashes).
        """
        ...


class TransientDestinationError(RuntimeError):
    """The request could not be completed now (timeouts, 5xx, 429 beyond the retry budget)."""


class DestinationAuthError(TransientDestinationError):
    """The vendor refused our credentials (401/403): stop the run, keep every record pending.

    Not the records' fault, so nothing is rejected or dead-lettered; the message names the
    credential's environment variable to check.
    """


class DestinationConfigError(ValueError):
    """The sync's destination settings are wrong; the message says which field and why."""


def result_for_all(
    records: Sequence[Record], outcome: Outcome, status_code: int | None, error: str | None = None
) -> list[RecordResult]:
    """The same answer for every record of a batch (vendors that answer per request)."""
    return [RecordResult(r.idempotency_key, outcome, status_code, error) for r in records]


def send_each(
    records: Sequence[Record], send_one: Callable[[Record], RecordResult]
) -> list[RecordResult]:
    """One request per record (vendors without a batch endpoint for this action).

    A transient failure on the first record raises, so the whole batch stays pending; after
    that, what already went out is kept and the rest is marked RETRY: safe to send again with
    the same idempotency keys.
    """
    results: list[RecordResult] = []
    for i, record in enumerate(records):
        try:
            results.append(send_one(record))
        except TransientDestinationError as exc:  # DestinationAuthError included
            if not results:
                raise
            return results + result_for_all(records[i:], Outcome.RETRY, None, str(exc))
    return results


@dataclass(frozen=True)
class EncodedBatch:
    """A batch the engine encoded inside the warehouse, for pass-through destinations.

    `records_json[i]` is the JSON text of record i in the generic shape
    `{"idempotency_key", "profile_id", "action", "fields"}` (fields after mapping, no
    templates); `idempotency_keys[i]` is its key. Python never builds a per-record object on
    this path, which is what lets a batch destination keep up with 100,000 rows/s.
    """

    action: Action
    idempotency_keys: Sequence[str]
    records_json: Sequence[str]


@dataclass(frozen=True)
class SpanAnswer:
    """One request's answer for records[start:stop] of an EncodedBatch.

    `error` set: the request refused every record of the span (a 4xx), with that reason.
    Otherwise each record is delivered unless its key is in `rejected` (key -> reason).
    """

    start: int
    stop: int
    status_code: int
    error: str | None = None
    rejected: Mapping[str, str] = field(default_factory=dict)


class PassThroughDestination(Destination, Protocol):
    """Optional: a destination whose request body is a plain list of generic records.

    The engine uses `send_encoded` when `accepts_encoded()` is true and the sync has no
    templates; removes and templated syncs still go through `send_batch`.
    """

    def accepts_encoded(self) -> bool: ...

    def send_encoded(self, batch: EncodedBatch) -> list[SpanAnswer]:
        """Send an encoded batch; raise TransientDestinationError like send_batch."""
        ...
