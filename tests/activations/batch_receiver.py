"""A real webhook receiver on 127.0.0.1 speaking the webhook destination's batch protocol.

It verifies the HMAC signature, applies records once per idempotency key (counting every
arrival), keeps the resulting member set, and can be told to answer with scripted statuses or
to refuse some records, the way a real receiver would.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from activations.destinations.webhook import SIGNATURE_HEADER, verify

SECRET = "whsec_test_secret"


@dataclass
class Scripted:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


class BatchReceiver:
    def __init__(self, secret: str = SECRET, count_only: bool = False) -> None:
        self.secret = secret.encode()
        # count_only: the benchmark's receiver; reads bodies, parses nothing.
        self.count_only = count_only
        self.lock = threading.Lock()
        self.script: list[Scripted] = []
        self.reject_profiles: set[str] = set()
        self.arrivals: dict[str, int] = {}  # idempotency key -> times it arrived
        self.applied: dict[str, dict[str, Any]] = {}  # key -> record, first arrival only
        self.members: dict[str, dict[str, Any]] = {}  # profile_id -> fields (after actions)
        self.request_times: list[float] = []
        self.statuses: list[int] = []
        self.bad_signatures = 0
        self.bytes_received = 0
        self.delay_seconds = 0.0  # per request, so that a test can kill a client mid-run
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> BatchReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                if len(body) < length:
                    # The client died mid-request (a SIGKILL test): nothing arrived to judge,
                    # and no answer can reach it. Not a bad signature.
                    self.close_connection = True
                    return
                status, headers, payload = receiver.handle(dict(self.headers.items()), body)
                data = json.dumps(payload).encode() if payload is not None else b""
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_PUT = do_POST  # noqa: N815
            do_DELETE = do_POST  # noqa: N815

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client SIGKILLed mid-request is expected in the crash test

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def handle(self, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str], Any]:
        if self.delay_seconds:
            time.sleep(self.delay_seconds)
        with self.lock:
            self.request_times.append(time.monotonic())
            self.bytes_received += len(body)
            if self.script:
                s = self.script.pop(0)
                self.statuses.append(s.status)
                return s.status, s.headers, s.body
        if self.count_only:
            with self.lock:
                self.statuses.append(200)
            return 200, {}, None
        signature = {k.lower(): v for k, v in headers.items()}.get(SIGNATURE_HEADER.lower(), "")
        if not verify(self.secret, signature, body):
            with self.lock:
                self.bad_signatures += 1
                self.statuses.append(401)
            return 401, {}, {"error": "bad signature"}
        doc = json.loads(body)
        rejected = []
        with self.lock:
            for rec in doc["records"]:
                key = rec["idempotency_key"]
                if rec["profile_id"] in self.reject_profiles:
                    rejected.append({"idempotency_key": key, "error": "invalid recipient"})
                    continue
                self.arrivals[key] = self.arrivals.get(key, 0) + 1
                if key in self.applied:
                    continue  # deduplicated: applied once per key
                self.applied[key] = rec
                if rec["action"] == "remove":
                    self.members.pop(rec["profile_id"], None)
                else:
                    self.members[rec["profile_id"]] = rec["fields"]
            self.statuses.append(200)
        return 200, {}, {"rejected": rejected}

    def keys_by_profile(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for key, rec in self.applied.items():
            out.setdefault(rec["profile_id"], set()).add(key)
        return out
