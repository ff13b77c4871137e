"""A minimal real HTTP receiver on 127.0.0.1 for the vendor-client tests.

Used until each vendor's stand-in lands in activations/standins/. The test supplies a responder
that checks the request the way the vendor documents it and answers in the vendor's shape; the
receiver records every request so the test can assert on what actually went over the wire.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Captured:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


# A responder gets the request and returns (status, JSON-able body or None, extra headers).
Responder = Callable[[Captured], tuple[int, Any, dict[str, str]]]


@dataclass
class Receiver:
    responder: Responder
    requests: list[Captured] = field(default_factory=list)
    url: str = ""

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            parts = urlsplit(self.path)
            captured = Captured(
                method=self.command,
                path=parts.path,
                query=parse_qs(parts.query),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
            )
            receiver.requests.append(captured)
            status, payload, headers = receiver.responder(captured)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", headers.pop("Content-Type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

    return Handler


@pytest.fixture
def receiver() -> Iterator[Callable[[Responder], Receiver]]:
    """Start receivers on 127.0.0.1 (ephemeral ports); all are stopped after the test."""
    servers: list[ThreadingHTTPServer] = []

    def start(responder: Responder) -> Receiver:
        rec = Receiver(responder)
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        servers.append(server)
        rec.url = f"http://127.0.0.1:{server.server_address[1]}"
        return rec

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
