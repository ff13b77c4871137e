"""Generic webhook: a JSON batch of records, HMAC-SHA256 signed, with idempotency keys.

Request: `POST <base_url><options.path>` with body
    {"batch_key": "...", "records": [{"idempotency_key", "profile_id", "action", "fields"}]}
Headers: `Idempotency-Key: <batch_key>` (a digest of the records' keys: the same batch always
carries the same key) and `X-Headwater-Signature: t=<unix ts>,v1=<hex HMAC-SHA256 of
"<ts>.<body>" with the signing secret>`. Receivers should deduplicate on each record's
`idempotency_key`: after a crash a record is re-sent with its key, maybe in another batch.

With `options.batch: false` each record is its own request: the body is the record object
(plus `id` = its key) and `Idempotency-Key` is the record's key, for receivers that deduplicate
per request.

Response: any 2xx accepts the batch; a JSON body `{"rejected": [{"idempotency_key", "error"}]}`
refuses just those records. A 4xx refuses the whole batch (413 splits it in halves first).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from activations.destinations.base import (
    Action,
    Channel,
    DestinationAuthError,
    DestinationConfig,
    DestinationConfigError,
    EncodedBatch,
    Outcome,
    Record,
    RecordResult,
    SpanAnswer,
    result_for_all,
)
from activations.http import HttpClient
from activations.jsonfast import dumps

SIGNATURE_HEADER = "X-Headwater-Signature"


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The signature header value for a body sent at `timestamp`."""
    digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: bytes, header: str, body: bytes, tolerance_seconds: float | None = 300) -> bool:
    """Receiver side: check a signature header (constant-time) and, optionally, its age."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        timestamp, given = parts["t"], parts["v1"]
    except (ValueError, KeyError):
        return False
    if tolerance_seconds is not None and abs(time.time() - int(timestamp)) > tolerance_seconds:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, given)


def batch_key(records: Sequence[Record]) -> str:
    return batch_key_of([r.idempotency_key for r in records])


def batch_key_of(keys: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(keys).encode()).hexdigest()


class WebhookDestination:
    max_batch_size: ClassVar[int] = 10_000
    supported_actions: ClassVar[frozenset[Action]] = frozenset(Action)
    channel: ClassVar[Channel | None] = None
    default_base_url: ClassVar[str | None] = None
    default_rate_limit: ClassVar[tuple[float, int] | None] = None

    def __init__(self, config: DestinationConfig, http: HttpClient) -> None:
        secret = config.credentials.get("signing_secret")
        if not secret:
            raise DestinationConfigError(
                "webhook: set destination.credentials.signing_secret to the NAME of an "
                "environment variable holding the HMAC signing secret"
            )
        self._secret = secret.encode()
        self.url = config.base_url + str(config.options.get("path", ""))
        self.batch = bool(config.options.get("batch", True))
        self.http = http
        self.auth_env = "destination.credentials.signing_secret"

    def send_batch(self, records: Sequence[Record]) -> list[RecordResult]:
        if not records:
            return []
        if not self.batch:
            return [self._send_one(r) for r in records]
        action = records[0].action.value  # the engine sends one action per batch
        body = dumps(
            {
                "batch_key": batch_key(records),
                "records": [
                    {
                        "idempotency_key": r.idempotency_key,
                        "profile_id": r.profile_id,
                        "action": action,
                        "fields": r.fields,
                    }
                    for r in records
                ],
            }
        )
        response = self._post(body, batch_key(records))
        code = response.status_code
        if code == 413 and len(records) > 1:
            half = len(records) // 2
            return self.send_batch(records[:half]) + self.send_batch(records[half:])
        if code >= 400:
            return result_for_all(records, Outcome.REJECTED, code, _reason(response.text))
        rejected = _rejected(response)
        return [
            RecordResult(r.idempotency_key, Outcome.REJECTED, code, rejected[r.idempotency_key])
            if r.idempotency_key in rejected
            else RecordResult(r.idempotency_key, Outcome.DELIVERED, code)
            for r in records
        ]

    def accepts_encoded(self) -> bool:
        # Batch mode sends the generic record shape verbatim; per-record mode adds `id`.
        return self.batch

    def send_encoded(self, batch: EncodedBatch, start: int = 0) -> list[SpanAnswer]:
        """The batch body assembled from records the warehouse already encoded.

        The same document send_batch would build (same keys in the same order; numbers as
        DuckDB prints them), so receivers cannot tell the two paths apart.
        """
        keys, records = batch.idempotency_keys, batch.records_json
        if not keys:
            return []
        key = batch_key_of(keys)
        body = f'{{"batch_key":"{key}","records":[{",".join(records)}]}}'.encode()
        response = self._post(body, key)
        code = response.status_code
        stop = start + len(keys)
        if code == 413 and len(keys) > 1:
            half = len(keys) // 2
            first = EncodedBatch(batch.action, keys[:half], records[:half])
            second = EncodedBatch(batch.action, keys[half:], records[half:])
            return self.send_encoded(first, start) + self.send_encoded(second, start + half)
        if code >= 400:
            return [SpanAnswer(start, stop, code, error=_reason(response.text))]
        return [SpanAnswer(start, stop, code, rejected=_rejected(response))]

    def _send_one(self, record: Record) -> RecordResult:
        body = dumps(
            {
                "id": record.idempotency_key,
                "idempotency_key": record.idempotency_key,
                "profile_id": record.profile_id,
                "action": record.action.value,
                "fields": record.fields,
            }
        )
        response = self._post(body, record.idempotency_key)
        if response.status_code >= 400:
            return RecordResult(
                record.idempotency_key, Outcome.REJECTED, response.status_code,
                _reason(response.text),
            )
        return RecordResult(record.idempotency_key, Outcome.DELIVERED, response.status_code)

    def _post(self, body: bytes, key: str) -> Any:
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            SIGNATURE_HEADER: sign(self._secret, timestamp, body),
        }
        response = self.http.request("POST", self.url, data=body, headers=headers)
        if response.status_code in (401, 403):
            raise DestinationAuthError(
                f"webhook {self.url} refused the request ({response.status_code}): check the "
                f"signing secret ({self.auth_env}) and the receiver's configuration"
            )
        return response


def _reason(text: str) -> str:
    return text.strip()[:500] or "(empty body)"


def _rejected(response: Any) -> dict[str, str]:
    if not response.content or "json" not in response.headers.get("Content-Type", ""):
        return {}
    try:
        data = response.json()
    except ValueError:
        return {}
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for item in data.get("rejected") or []:
            if isinstance(item, dict) and "idempotency_key" in item:
                out[str(item["idempotency_key"])] = str(item.get("error") or "rejected")[:500]
    return out
