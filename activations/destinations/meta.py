"""Meta Custom Audiences: add/remove hashed customer-file rows on `/{audience_id}/users`.

Contract (/work/shared/destinations.md §3.7): POST (add) or DELETE (remove)
`{base}/{version}/{audience_id}/users` with `payload = {"schema": [...], "data": [[...], ...]}`
(<= 10,000 rows) and `session = {session_id, batch_seq, last_batch_flag}`; each value normalized
and SHA-256 hashed by Meta's rules (activations/identifiers.py), EXTERN_ID/MADID in plain text.
Sent as a JSON body with `Authorization: Bearer <token>` (the header form is marked [U] in
destinations.md; Graph also takes `access_token` as a parameter) so the token never sits in a
URL that an exception or proxy log could print.

Per-record errors: Meta only returns `num_invalid_entries` and a *sample* of invalid entries.
Decision: validate locally first — a row whose values cannot be normalized into any matchable
key (EMAIL, PHONE, EXTERN_ID, MADID) is REJECTED before sending, unusable secondary columns
are blanked. Rows named in `invalid_entry_samples` are REJECTED with Meta's reason; other rows
are DELIVERED, and when Meta reports more invalid rows than it sampled, every DELIVERED result
carries the count in `error` so the shortfall is visible without failing good rows.

Throttling is a Graph error (codes 4, 17, 32, 613, 80003, or `is_transient`) in an HTTP 400,
not a 429, so the HTTP layer does not retry it: it is raised as TransientDestinationError.
Sessions: one session per batch (batch_seq 1, last_batch_flag true), its id derived from the
batch's idempotency keys so a resent batch reuses it. Adds and removes are set operations.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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
    TransientDestinationError,
)
from activations.http import HttpClient
from activations.identifiers import META_KEYS, META_UNHASHED_KEYS, meta_hash

MAX_ROWS = 10_000
MATCH_KEYS = frozenset({"EMAIL", "PHONE", "EXTERN_ID", "MADID"})
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80003, 80004})
AUTH_CODES = frozenset({10, 102, 104, 190, 200, 294})
DEFAULT_FIELDS = {
    "EMAIL": "email", "PHONE": "phone", "FN": "first_name", "LN": "last_name", "CT": "city",
    "ST": "state", "ZIP": "postal_code", "COUNTRY": "country", "GEN": "gender",
    "DOBY": "birth_year", "DOBM": "birth_month", "DOBD": "birth_day",
    "EXTERN_ID": "external_id", "MADID": "madid",
}


@dataclass(frozen=True)
class MetaOptions:
    """Settings for a Meta Custom Audience sync, from DestinationConfig."""

    access_token: str  # system-user token with ads_management (credential `access_token`)
    app_secret: str | None  # optional (credential `app_secret`): adds appsecret_proof
    audience_id: str  # numeric custom audience id (option)
    api_version: str  # Graph API version path segment, e.g. v25.0 (option)
    schema: tuple[str, ...]  # Meta schema keys sent per row, in order (option)
    fields: dict[str, str] = field(default_factory=dict)  # schema key -> record field name
    default_phone_country: str = "US"  # region for phones without a country code (option)

    @classmethod
    def from_config(cls, config: DestinationConfig) -> MetaOptions:
        token = config.credentials.get("access_token")
        if not token:
            raise DestinationConfigError(
                "meta: set destination.credentials.access_token to the NAME of the environment "
                "variable holding a system-user token with ads_management"
            )
        o = config.options
        audience = str(o.get("audience_id", ""))
        if not audience.isdigit():
            raise DestinationConfigError(
                "meta: destination.options.audience_id must be the numeric custom audience id"
            )
        schema = tuple(str(k).upper() for k in o.get("schema", ("EMAIL", "PHONE", "FN", "LN")))
        unknown = [k for k in schema if k not in META_KEYS and k not in META_UNHASHED_KEYS]
        if unknown or not schema or not MATCH_KEYS & set(schema):
            raise DestinationConfigError(
                f"meta: destination.options.schema {list(schema)} must list Meta keys and "
                f"include one of {sorted(MATCH_KEYS)}; unknown: {unknown}"
            )
        fields = {k: str((o.get("fields") or {}).get(k, DEFAULT_FIELDS.get(k, k.lower())))
                  for k in schema}
        return cls(
            access_token=token,
            app_secret=config.credentials.get("app_secret") or None,
            audience_id=audience,
            api_version=str(o.get("api_version", "v25.0")),
            schema=schema,
            fields=fields,
            default_phone_country=str(o.get("default_phone_country", "US")),
        )


class MetaDestination:
    kind: ClassVar[str] = "meta"
    channel: ClassVar[Channel | None] = Channel.ADS
    default_base_url: ClassVar[str | None] = "https://graph.facebook.com"
    # Business-use-case limits are per ad account and not a fixed number; a few calls per
    # second of 10,000 rows each is far inside them.
    default_rate_limit: ClassVar[tuple[float, int] | None] = (2.0, 2)
    max_batch_size: ClassVar[int] = MAX_ROWS
    supported_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.ADD, Action.UPDATE, Action.REMOVE}
    )

    def __init__(self, config: DestinationConfig, http: HttpClient) -> None:
        self.options = MetaOptions.from_config(config)
        base = (config.base_url or "https://graph.facebook.com").rstrip("/")
        self.url = f"{base}/{self.options.api_version}/{self.options.audience_id}/users"
        self.http = http

    def row(self, record: Record) -> list[str] | str:
        """The record's hashed row in schema order, or why it has no matchable key."""
        values: list[str] = []
        for key in self.options.schema:
            raw = record.fields.get(self.options.fields[key])
            hashed = meta_hash(key, raw, self.options.default_phone_country) if raw else None
            values.append(hashed or "")  # an unusable secondary column is left empty
        if not any(v for k, v in zip(self.options.schema, values, strict=True)
                   if k in MATCH_KEYS):
            return ("no matchable identifier for Meta: "
                    + ", ".join(self.options.fields[k] for k in self.options.schema
                                if k in MATCH_KEYS) + " missing or not normalizable")
        return values

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        if not records:
            return []
        results: dict[str, RecordResult] = {}
        ready: list[tuple[Record, list[str]]] = []
        for r in records:
            row = self.row(r)
            if isinstance(row, str):
                results[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                          None, row)
            else:
                ready.append((r, row))
        method = "DELETE" if records[0].action == Action.REMOVE else "POST"
        for start in range(0, len(ready), MAX_ROWS):
            results.update(self._upload(method, ready[start : start + MAX_ROWS]))
        return [results[r.idempotency_key] for r in records]

    def _upload(self, method: str, chunk: list[tuple[Record, list[str]]]
                ) -> dict[str, RecordResult]:
        keys = sorted(r.idempotency_key for r, _ in chunk)
        # int63 from the batch's keys: a resent batch reuses its session id.
        session_id = int.from_bytes(hashlib.sha256("\n".join(keys).encode()).digest()[:8],
                                    "big") >> 1
        body: dict[str, Any] = {
            "payload": {"schema": list(self.options.schema), "data": [row for _, row in chunk]},
            "session": {"session_id": session_id, "batch_seq": 1, "last_batch_flag": True,
                        "estimated_num_total": len(chunk)},
        }
        if self.options.app_secret:
            body["appsecret_proof"] = hmac.new(self.options.app_secret.encode(),
                                               self.options.access_token.encode(),
                                               hashlib.sha256).hexdigest()
        resp = self.http.request(
            method, self.url, data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {self.options.access_token}",
                     "Content-Type": "application/json"},
        )
        status, data = resp.status_code, _json(resp)
        if status >= 300:
            raw_error = data.get("error")
            error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            code = error.get("code")
            reason = f"meta {status} (#{code}): {error.get('message') or resp.text[:300]}"
            if code in THROTTLE_CODES or error.get("is_transient"):
                raise TransientDestinationError(f"{reason}; retried next run")
            if status in (401, 403) or code in AUTH_CODES:
                raise DestinationAuthError(
                    f"meta refused the access token or its permissions (#{code}): check the "
                    "environment variable named in destination.credentials.access_token "
                    "(ads_management on this ad account)"
                )
            return {r.idempotency_key: RecordResult(r.idempotency_key, Outcome.REJECTED, status,
                                                    reason) for r, _ in chunk}
        samples = data.get("invalid_entry_samples") or {}
        invalid = int(data.get("num_invalid_entries") or 0)
        unsampled = invalid - sum(1 for r, row in chunk if _sample(samples, row) is not None)
        note = (f"meta reported {invalid} invalid rows in this batch, {unsampled} unnamed"
                if unsampled > 0 else None)
        out: dict[str, RecordResult] = {}
        for r, row in chunk:
            sampled = _sample(samples, row)
            if sampled is not None:
                out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.REJECTED,
                                                      status, f"meta: {sampled}")
            else:
                out[r.idempotency_key] = RecordResult(r.idempotency_key, Outcome.DELIVERED,
                                                      status, note)
        return out


def _sample(samples: Any, row: list[str]) -> str | None:
    """Meta's reason when this row is among the sampled invalid entries."""
    if not isinstance(samples, dict) or not samples:
        return None
    for key in (json.dumps(row), row[0] if len(row) == 1 else None):
        if key is not None and key in samples:
            return str(samples[key])
    return None


def _json(response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
