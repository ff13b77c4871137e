"""Collector acknowledgement latency at a steady 500 events/s, with and without group commit.

Each event is its own /v1/track request (the worst case for file count: browsers send one call
per event), paced open-loop from 8 client threads in this process over keep-alive connections.
The baseline is group commit off (one fsynced file per request); the ratio shows what sharing
files buys. Latency is client-measured: request sent to `{"success": true}` received, i.e.
after the event's file and directory were fsynced.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # until packaging lists collector*
    sys.path.insert(0, str(REPO_ROOT))

from collector import landing  # noqa: E402
from collector.config import CollectorConfig  # noqa: E402
from collector.server import Collector  # noqa: E402

KEY = "bench-key"
CLIENTS = 8


def _load(url: str, rate: float, seconds: float) -> tuple[list[float], int]:
    latencies: list[float] = []
    failures = 0
    lock = threading.Lock()
    per_client = rate / CLIENTS
    start = time.perf_counter() + 0.2

    def client(offset: int) -> None:
        nonlocal failures
        session = requests.Session()
        count = int(per_client * seconds)
        for i in range(count):
            due = start + (i + offset / CLIENTS) / per_client
            delay = due - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            body: dict[str, Any] = {
                "userId": f"u{i}",
                "event": "Product Added",
                "messageId": str(uuid.uuid4()),
                "properties": {"sku": "SKU-1", "price": 10.0},
            }
            sent = time.perf_counter()
            ok = session.post(url + "/v1/track", json=body, auth=(KEY, ""), timeout=10).ok
            elapsed = (time.perf_counter() - sent) * 1000
            with lock:
                latencies.append(elapsed)
                failures += 0 if ok else 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 60)
    return sorted(latencies), failures


def _pct(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, int(len(values) * p))] if values else float("nan")


def run(quick: bool = False) -> list[dict[str, Any]]:
    rate, seconds = (200.0, 2.0) if quick else (500.0, 10.0)
    rows: list[dict[str, Any]] = []
    cases = [(False, rate), (True, rate), (True, 20.0)]  # the last: an idle collector's floor
    for group_commit, rate in cases:
        with tempfile.TemporaryDirectory(prefix="bench-collector-") as tmp:
            config = CollectorConfig.from_env(
                {"HEADWATER_WRITE_KEY": KEY},
                port=0,
                landing_dir=Path(tmp),
                group_commit=group_commit,
            )
            with Collector(config) as running:
                latencies, failures = _load(running.url, rate, seconds)
                files = len(landing.landed_files(config.events_dir))
            rows.append(
                {
                    "case": ("group commit" if group_commit else "file per request (baseline)")
                    + (" (idle)" if rate < 100 else ""),
                    "events_per_s": rate,
                    "events": len(latencies),
                    "failures": failures,
                    "files": files,
                    "p50_ms": round(_pct(latencies, 0.50), 2),
                    "p99_ms": round(_pct(latencies, 0.99), 2),
                    "max_ms": round(latencies[-1], 2) if latencies else None,
                }
            )
    base = rows[0]["p99_ms"]
    for row in rows:
        row["p99_vs_baseline"] = round(row["p99_ms"] / base, 2) if base else None
    return rows


if __name__ == "__main__":
    for row in run(quick="--quick" in sys.argv):
        print(row)
