"""The HTTP layer over raw sockets: pipelining, framing errors, CORS preflight, keep-alive."""

from __future__ import annotations

import base64
import json
import re
import socket
from pathlib import Path

from collector_testkit import WRITE_KEY, landed

from collector.server import Collector

AUTH = base64.b64encode(f"{WRITE_KEY}:".encode())


def _exchange(url: str, data: bytes, seconds: float = 2.0) -> bytes:
    """Send `data` on one connection; everything read until the server closes or goes quiet."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=seconds) as sock:
        sock.sendall(data)
        out = b""
        try:
            while chunk := sock.recv(65536):
                out += chunk
        except TimeoutError:
            return out
        return out + b"<closed>"


def _track(message_id: str, *, path: bytes = b"/v1/track", framing: bytes | None = None) -> bytes:
    body = json.dumps({"userId": "u1", "event": "E", "messageId": message_id}).encode()
    length = b"Content-Length: %d\r\n" % len(body) if framing is None else framing
    return (b"POST " + path + b" HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + AUTH + b"\r\n"
            + length + b"\r\n" + body)


def test_pipelined_requests_are_answered_in_order_on_one_connection(
    collector: Collector, landing_dir: Path
) -> None:
    out = _exchange(collector.url, _track("p1") + _track("p2", path=b"/v1/nope") + _track("p3"))
    statuses = re.findall(rb"HTTP/1.1 (\d+) ", out)
    assert statuses == [b"200", b"404", b"200"]
    assert not out.endswith(b"<closed>")  # still keep-alive
    assert sorted(r["message_id"] for r in landed(landing_dir)) == ["p1", "p3"]


def test_unframed_bodies_get_411_and_the_connection_closes(
    collector: Collector, landing_dir: Path
) -> None:
    for framing in (b"", b"Transfer-Encoding: chunked\r\n"):
        out = _exchange(collector.url, _track("c1", framing=framing) + _track("c2"))
        assert out.startswith(b"HTTP/1.1 411 ")
        assert b"Connection: close" in out and out.endswith(b"<closed>")
        assert out.count(b"HTTP/1.1") == 1  # what followed was not parsed
    bad = _exchange(collector.url, _track("c3", framing=b"Content-Length: -5\r\n"))
    assert bad.startswith(b"HTTP/1.1 400 ") and b'"bad_length"' in bad
    assert landed(landing_dir) == []


def test_preflight_health_and_cors_headers(collector: Collector) -> None:
    out = _exchange(collector.url, b"OPTIONS /v1/track HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    first, second = out.split(b"HTTP/1.1 ")[1:]
    assert first.startswith(b"204 ") and b"Access-Control-Allow-Origin: *" in first
    assert second.startswith(b"200 ") and second.endswith(b'{"ok": true}')
    http10 = _exchange(collector.url, b"GET /health HTTP/1.0\r\n\r\n")
    assert b"Connection: close" in http10 and http10.endswith(b"<closed>")
