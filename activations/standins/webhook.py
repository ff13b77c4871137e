"""Generic signed webhook receiver.

Contract (Headwater's own, the webhook destination sends it):
- any path, POST, any body (JSON is parsed for inspection, other bodies are kept as text);
- `X-Headwater-Signature: t=<unix ts>,v1=<hex hmac-sha256(secret, "<ts>.<raw body>")>`; several
  `v1=` entries are allowed (secret rotation), the timestamp must be within the tolerance;
- `Idempotency-Key`: a replayed key is answered 200 again but stored once; every delivery per key
  is counted, so a test can tell "no duplicates stored" from "no retries happened".
- a JSON body with `records[]` whose items carry an `idempotency_key` (the webhook destination's
  batch shape) is deduplicated per record as well: after a crash the engine re-sends a record
  with its original key, possibly in a batch of different records (so under a different
  `Idempotency-Key`). A record already stored under its key is not stored again; every arrival
  of a record key is counted (`record_deliveries`), every storage too (`records_stored`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from activations.standins.core import Request, Response, Route, Standin, StandinConfig
from activations.standins.core import json_response as _json
from activations.standins.faults import Fault

SIGNATURE_HEADER = "X-Headwater-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def webhook_signature(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The X-Headwater-Signature header value for `body` (what the webhook destination sends)."""
    ts = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={digest}"


@dataclass
class WebhookConfig(StandinConfig):
    secret: str = "whsec_headwater_test"
    tolerance_seconds: int = 300
    require_signature: bool = True
    # Without a key every request is stored (append semantics, no dedup possible).
    require_idempotency_key: bool = False
    max_body_bytes: int = 1024 * 1024


@dataclass(frozen=True)
class Delivery:
    """One stored webhook message (the first delivery of its key)."""

    key: str | None
    path: str
    body: Any
    received_at: float


class WebhookStandin(Standin):
    name = "webhook"
    config: WebhookConfig

    def __init__(self, config: WebhookConfig | None = None, **kwargs: Any) -> None:
        super().__init__(config, **kwargs)
        self._messages: list[Delivery] = []
        self._deliveries: dict[str, int] = {}
        # Per record key (records[].idempotency_key): the first stored copy, how often the key
        # arrived (retries and crash re-sends included) and how often it was stored (1 unless
        # the dedup is broken: kept as a count so a test asserts it rather than assumes it).
        self._records: dict[str, Any] = {}
        self._record_arrivals: dict[str, int] = {}
        self._record_stores: dict[str, int] = {}

    @classmethod
    def default_config(cls) -> WebhookConfig:
        return WebhookConfig()

    def routes(self) -> list[Route]:
        # Any path: the router sees a catch-all pattern.
        import re

        return [Route("POST", re.compile(r"^/(?!__headwater/).*$"), self._receive)]

    # ---- inspection --------------------------------------------------------------------------
    def messages(self) -> list[Delivery]:
        with self.lock:
            return list(self._messages)

    def deliveries_by_key(self) -> dict[str, int]:
        """How many times each Idempotency-Key arrived (stored once, counted every time)."""
        with self.lock:
            return dict(self._deliveries)

    def records(self) -> dict[str, Any]:
        """Stored batch records by their idempotency key (each stored once)."""
        with self.lock:
            return dict(self._records)

    def record_deliveries(self) -> dict[str, int]:
        """How many times each record key arrived (a retried or re-sent record counts again)."""
        with self.lock:
            return dict(self._record_arrivals)

    def records_stored(self) -> dict[str, int]:
        """How many times each record key was stored: every value is 1 unless dedup is broken."""
        with self.lock:
            return dict(self._record_stores)

    def duplicates_stored(self) -> list[str]:
        """Keys stored more than once; always empty unless dedup is broken."""
        with self.lock:
            seen: dict[str, int] = {}
            for m in self._messages:
                if m.key is not None:
                    seen[m.key] = seen.get(m.key, 0) + 1
            return sorted(k for k, n in seen.items() if n > 1)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "standin": self.name,
                "messages": [m.__dict__ for m in self._messages],
                "deliveries_by_key": dict(self._deliveries),
                "records": dict(self._records),
                "record_deliveries": dict(self._record_arrivals),
                "records_stored": dict(self._record_stores),
            }

    # ---- vendor behaviour --------------------------------------------------------------------
    def authenticate(self, req: Request) -> Response | None:
        if not self.config.require_signature:
            return None
        problem = self._signature_problem(req)
        if problem is None:
            return None
        return _json(401, {"error": "invalid_signature", "message": problem})

    def _signature_problem(self, req: Request) -> str | None:
        header = req.header(SIGNATURE_HEADER)
        if not header:
            return f"missing {SIGNATURE_HEADER} header"
        ts: str | None = None
        candidates: list[str] = []
        for part in header.split(",")[:10]:
            key, _, value = part.strip().partition("=")
            if key == "t":
                ts = value
            elif key == "v1":
                candidates.append(value)
        if ts is None or not ts.isdigit() or not candidates:
            return f"malformed {SIGNATURE_HEADER} header (expected t=<ts>,v1=<hex>)"
        if abs(time.time() - int(ts)) > self.config.tolerance_seconds:
            return "timestamp outside the tolerance window"
        expected = hmac.new(
            self.config.secret.encode(), ts.encode() + b"." + req.body, hashlib.sha256
        ).hexdigest()
        if not any(hmac.compare_digest(expected, c) for c in candidates):
            return "signature does not match"
        return None

    def throttled(self, fault: Fault) -> Response:
        headers = {"Retry-After": _seconds(fault.retry_after)} if fault.retry_after else {}
        return _json(429, {"error": "rate_limited"}, headers)

    def server_error(self, fault: Fault) -> Response:
        return _json(fault.status, {"error": "server_error"})

    def _receive(self, req: Request) -> Response:
        if len(req.body) > self.config.max_body_bytes:
            return _json(413, {"error": "payload_too_large"})
        key = req.header(IDEMPOTENCY_HEADER)
        if key is None and self.config.require_idempotency_key:
            return _json(400, {"error": "missing_idempotency_key"})
        try:
            body: Any = json.loads(req.body) if req.body else None
        except ValueError:
            body = req.body.decode("utf-8", "replace")
        record_id = body.get("id") if isinstance(body, dict) else None
        if self.faults.rejects(key, record_id):
            return _json(422, {"error": "rejected", "idempotency_key": key})
        with self.lock:
            if key is not None:
                count = self._deliveries.get(key, 0) + 1
                self._deliveries[key] = count
                if count > 1:
                    return _json(200, {"status": "duplicate", "idempotency_key": key})
            fresh = self._store_records(body)
            if fresh is not None and not fresh:
                # Every record of the batch is already stored: nothing new to keep.
                return _json(200, {"status": "duplicate", "idempotency_key": key})
            stored_body = body if fresh is None else {**body, "records": fresh}
            self._messages.append(Delivery(key, req.path, stored_body, time.time()))
        return _json(200, {"status": "accepted", "idempotency_key": key})

    def _store_records(self, body: Any) -> list[Any] | None:
        """Keep the batch's records not stored before; None when the body has no keyed records.

        Caller holds the lock. A stored message keeps only its new records, so the messages
        list never holds one record twice.
        """
        if not isinstance(body, dict) or not isinstance(body.get("records"), list):
            return None
        keyed = [r for r in body["records"]
                 if isinstance(r, dict) and isinstance(r.get("idempotency_key"), str)]
        if not keyed:
            return None
        fresh: list[Any] = []
        for record in body["records"]:
            rkey = record.get("idempotency_key") if isinstance(record, dict) else None
            if not isinstance(rkey, str):
                fresh.append(record)  # an unkeyed record cannot be deduplicated: kept
                continue
            self._record_arrivals[rkey] = self._record_arrivals.get(rkey, 0) + 1
            if rkey in self._records:
                continue
            self._records[rkey] = record
            self._record_stores[rkey] = self._record_stores.get(rkey, 0) + 1
            fresh.append(record)
        return fresh


def _seconds(value: float | None) -> str:
    return str(max(0, round(value or 0)))
