"""An open-loop load generator for the collector: `Signed Up` tracks, one per /v1/track request.

Why not `requests` in threads (what the fast-path benchmark used first): the storefronts'
browsers are not on the machine under test, but a load generator is, and `requests` spent
about 1.5 ms of CPU per request here (proxy lookups in os.environ, header objects), as much
as the collector itself: at 500/s that is most of a core taken from the system being measured.
Worse, a few synchronous clients are a closed loop: when answers slow down, the offered rate
silently drops with them. This generator sends each request at its scheduled moment on any idle
keep-alive connection (opening another when all are busy, as independent browsers would), with
pre-encoded bytes over asyncio streams, and reports how late it was against its schedule, so a
run that did not offer the load it claims says so.

It runs in a child process (`run_load`) so its CPU is not the benchmark process's.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

MAX_CONNECTIONS = 64  # beyond this the collector is refusing work; more sockets would not help


@dataclass
class LoadResult:
    """What the generator did: email -> wall time its acknowledgement was read, and how well
    it kept to the schedule."""

    acked: dict[str, float] = field(default_factory=dict)
    # email -> wall time its request was written: acked - sent is what the SDK waited.
    sent_at: dict[str, float] = field(default_factory=dict)
    sent: int = 0
    failed: int = 0  # non-200 answers and broken connections (never retried: open loop)
    seconds: float = 0.0  # first scheduled send to last acknowledgement
    lag_p99_ms: float = 0.0  # how late sends started against their schedule
    connections: int = 0


def _request(host: str, key: str, tag: str, n: int) -> tuple[str, bytes]:
    email = f"{tag}-{n}@bench.example.com"
    body = json.dumps({
        "type": "track", "event": "Signed Up", "messageId": str(uuid.uuid4()),
        "anonymousId": f"a-{tag}-{n}", "context": {"traits": {"email": email}},
    }).encode()
    auth = base64.b64encode(f"{key}:".encode()).decode()
    head = (f"POST /v1/track HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return email, head.encode() + body


async def _answer(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return head.split(b"\r\n", 1)[0] + b"\n" + body


async def _run(url: str, key: str, rate: float, seconds: float, tag: str) -> LoadResult:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    result = LoadResult()
    idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
    lags: list[float] = []
    total = int(rate * seconds)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    wall_offset = time.time() - loop.time()

    inflight = 0

    async def one(n: int) -> None:
        nonlocal inflight
        inflight += 1
        try:
            await _exchange(n)
        finally:
            inflight -= 1

    async def _exchange(n: int) -> None:
        email, payload = _request(f"{host}:{port}", key, tag, n)
        if idle:
            reader, writer = idle.pop()
        else:
            reader, writer = await asyncio.open_connection(host, port)
            result.connections += 1
        try:
            result.sent_at[email] = loop.time() + wall_offset
            writer.write(payload)
            answer = await _answer(reader)
        except (OSError, asyncio.IncompleteReadError):
            result.failed += 1
            writer.close()
            return
        if answer.startswith(b"HTTP/1.1 200") and b'"success": true' in answer:
            result.acked[email] = loop.time() + wall_offset
        else:
            result.failed += 1
        idle.append((reader, writer))

    tasks = []
    for n in range(total):
        due = start + n / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lags.append(max(0.0, loop.time() - due) * 1000)
        while inflight >= MAX_CONNECTIONS:
            await asyncio.sleep(0.001)  # every connection busy: the collector is saturated
        tasks.append(asyncio.ensure_future(one(n)))
        result.sent += 1
    await asyncio.gather(*tasks)
    result.seconds = loop.time() - start
    lags.sort()
    result.lag_p99_ms = lags[int(len(lags) * 0.99)] if lags else 0.0
    for _, writer in idle:
        writer.close()
    return result


def run_load(url: str, key: str, rate: float, seconds: float, tag: str) -> LoadResult:
    """Offer `rate` requests/s for `seconds` from a child process; blocks until done."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", url, key, str(rate), str(seconds), tag],
        check=True, capture_output=True, cwd=Path(__file__).resolve().parent.parent,
    ).stdout
    return LoadResult(**json.loads(out))


if __name__ == "__main__":
    _url, _key, _rate, _seconds, _tag = sys.argv[1:6]
    done = asyncio.run(_run(_url, _key, float(_rate), float(_seconds), _tag))
    print(json.dumps(asdict(done)))
