"""Helpers for the collector tests: configs, SDK-shaped payloads, reading what landed."""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import requests

from collector import landing
from collector.config import CollectorConfig

WRITE_KEY = "test-write-key-7f3a"


def make_config(landing_dir: Path, **overrides: Any) -> CollectorConfig:
    env = {"HEADWATER_WRITE_KEY": f"other-key,{WRITE_KEY}"}
    return CollectorConfig.from_env(env, port=0, landing_dir=landing_dir, **overrides)


def python_message(kind: str = "track", **fields: Any) -> dict[str, Any]:
    """A message as analytics-python's Client._enqueue builds it (after clean())."""
    msg: dict[str, Any] = {
        "integrations": {},
        "anonymousId": None,
        "properties": {},
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "context": {"library": {"name": "analytics-python", "version": "2.3.4"}},
        "userId": "user-1",
        "type": kind,
        "messageId": str(uuid.uuid4()),
    }
    if kind == "track":
        msg["event"] = "Product Added"
    if kind == "identify":
        msg["traits"] = {"email": "Ada@Example.com"}
        del msg["properties"]
    msg.update(fields)
    return {k: v for k, v in msg.items() if v is not None}


def python_post(
    url: str,
    messages: list[dict[str, Any]],
    *,
    key: str = WRITE_KEY,
    gzipped: bool = True,
    session: requests.Session | None = None,
    sent_at: str | None = None,
) -> requests.Response:
    """POST exactly as analytics-python's request.post does: batch, sentAt, writeKey, Basic."""
    body = {
        "batch": messages,
        "sentAt": sent_at or datetime.now(UTC).isoformat(),
        "writeKey": key,
    }
    data: bytes = json.dumps(body).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "analytics-python/2.3.4"}
    if gzipped:
        headers["Content-Encoding"] = "gzip"
        data = gzip.compress(data)
    return (session or requests).post(
        url + "/v1/batch", data=data, headers=headers, auth=(key, ""), timeout=10
    )


def landed(landing_dir: Path, where: str = "true") -> list[dict[str, Any]]:
    """Every landed event row, through the same SQL the models will use."""
    return _rows(
        f"select * from {landing.read_sql(landing_dir)} where {where} "
        "order by received_at, message_id"
    )


def quarantined(landing_dir: Path) -> list[dict[str, Any]]:
    return _rows(f"select * from {landing.quarantine_read_sql(landing_dir)} order by received_at")


def _rows(sql: str) -> list[dict[str, Any]]:
    con = duckdb.connect()
    try:
        rel = con.sql(sql)
        names = rel.columns
        return [dict(zip(names, row, strict=True)) for row in rel.fetchall()]
    finally:
        con.close()
