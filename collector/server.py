"""The Segment HTTP Tracking API over the standard library's ThreadingHTTPServer.

Why the standard library: the collector's work per request is parse, validate and wait for one
fsync; a thread per connection is plenty for hundreds of requests per second on 2 cores, and it
adds no dependency (uvicorn/starlette are installed only as dagster-webserver's dependencies, and
an async server would still need a thread for the blocking fsync).

Answers (Segment's bodies, so SDKs read them unchanged):
- 200 `{"success": true}` once every message of the request is durable: landed in events/, or
  quarantined with its reason (a bad message inside a good request is the sender's bug that a
  retry cannot fix; Segment also answers 200). Header `X-Headwater-Quarantined` counts them.
- 400 invalid JSON or a body that is not a Segment call (the body is quarantined when the
  sender is authenticated), 401 missing or wrong write key, 404 unknown path, 411 no
  Content-Length, 413 body over the limit (also after gzip decompression), 415 unknown
  Content-Encoding, 503 when the landing queue is full (SDKs retry), 500 when landing failed.
  Error bodies are `{"success": false, "code": …, "message": …}` (analytics-python reads both).
Write keys are never logged or stored; request logging carries the path and status only.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import socket
import threading
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from collector.config import CollectorConfig
from collector.messages import EventRow, Rejection, loads, normalize, redacted
from collector.writer import LandingWriter, Submission, WriterBusyError

log = logging.getLogger(__name__)

# Path → message type; None means a batch. Short forms are what analytics.js posts to.
ROUTES: dict[str, str | None] = {
    "/v1/batch": None,
    "/v1/b": None,
    "/v1/import": None,
    **{f"/v1/{t}": t for t in ("track", "identify", "page", "screen", "alias", "group")},
    **{f"/v1/{t[0]}": t for t in ("track", "identify", "page", "screen", "alias", "group")},
}
# Bodies above the limit but below this are read and discarded so the connection stays usable
# and the client reads our 413 instead of a reset; anything larger closes the connection.
DRAIN_LIMIT = 8 * 1024 * 1024
# Content type and CORS (analytics.js posts from browsers, cross-origin), on every answer.
_FIXED_HEADERS = (
    b"Content-Type: application/json\r\n"
    b"Access-Control-Allow-Origin: *\r\n"
    b"Access-Control-Allow-Headers: Content-Type, Authorization\r\n"
    b"Access-Control-Allow-Methods: POST, OPTIONS\r\n"
)
# How long a request waits for its messages to land before answering 503 (SDKs retry, dedup).
LAND_TIMEOUT_SECONDS = 30.0


class RequestError(Exception):
    """An answer other than success, with Segment-style code and message."""

    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Outcome:
    """What a request produced."""

    landed: int
    duplicates: int
    quarantined: int


class CollectorServer(ThreadingHTTPServer):
    """HTTP server bound to one config and one landing writer."""

    daemon_threads = True

    def __init__(self, config: CollectorConfig, writer: LandingWriter) -> None:
        self.config = config
        self.writer = writer
        super().__init__((config.host, config.port), CollectorHandler)


class CollectorHandler(BaseHTTPRequestHandler):
    """One connection; keep-alive because SDKs reuse theirs."""

    protocol_version = "HTTP/1.1"
    server_version = "headwater-collector"
    # Socket timeout: a client that stops sending mid-body cannot hold a thread forever.
    timeout = 30
    server: CollectorServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY, Nagle plus the
        # client's delayed ACK adds ~40 ms to every keep-alive response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The default writes to stderr with the request line; keep it off the hot path.
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s " + format, self.address_string(), *args)

    def do_OPTIONS(self) -> None:  # noqa: N802 - stdlib naming
        self._send(HTTPStatus.NO_CONTENT, None)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.split("?")[0].rstrip("/") == "/health":
            self._send(HTTPStatus.OK, {"ok": True})
        else:
            self._send_error(RequestError(HTTPStatus.NOT_FOUND, "not_found", "unknown path"))

    def do_POST(self) -> None:  # noqa: N802
        self._body_consumed = False
        try:
            outcome = self._handle()
        except RequestError as exc:
            if not self._body_consumed:
                # Leave the connection usable for the client's next request.
                self._discard_body()
            self._send_error(exc)
            return
        headers = {"X-Headwater-Quarantined": str(outcome.quarantined)}
        self._send(HTTPStatus.OK, {"success": True}, headers)

    # -- request steps -------------------------------------------------------------------

    def _handle(self) -> Outcome:
        path = self.path.split("?")[0].rstrip("/")
        if path not in ROUTES:
            self._discard_body()
            raise RequestError(HTTPStatus.NOT_FOUND, "not_found", f"unknown path {path}")
        path_type = ROUTES[path]
        config = self.server.config
        limit = config.max_batch_bytes if path_type is None else config.max_message_bytes
        header_key = self._basic_auth_key()
        if header_key is not None and not self._accepted(header_key):
            self._discard_body()
            raise RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized", "invalid write key")
        text = self._read_body(limit)
        try:
            body = loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            if header_key is None:
                raise RequestError(
                    HTTPStatus.UNAUTHORIZED, "unauthorized", "no write key (Basic auth)"
                ) from exc
            self._quarantine_body(text, f"invalid_json: {exc}")
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_json", str(exc)) from exc
        if header_key is None:
            body_key = body.get("writeKey") if isinstance(body, dict) else None
            if not isinstance(body_key, str) or not self._accepted(body_key):
                raise RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized", "invalid write key")
        if not isinstance(body, dict):
            self._quarantine_body(text, "invalid_body: the body must be a JSON object")
            raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_body", "expected a JSON object")
        return self._land(path_type, body, path)

    def _basic_auth_key(self) -> str | None:
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            raise RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized", "use Basic auth")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized", "bad Basic auth") from exc
        return decoded.partition(":")[0]

    def _accepted(self, key: str) -> bool:
        # Compare against every key in constant time so timing does not reveal a prefix.
        matches = [
            hmac.compare_digest(key.encode(), k.encode()) for k in self.server.config.write_keys
        ]
        return any(matches)

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise RequestError(
                HTTPStatus.LENGTH_REQUIRED, "length_required", "chunked bodies are not accepted"
            )
        raw = self.headers.get("Content-Length")
        if raw is None:
            self.close_connection = True
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "length_required", "Content-Length")
        try:
            length = int(raw)
        except ValueError as exc:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad_length", "Content-Length") from exc
        if length < 0:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad_length", "Content-Length")
        return length

    def _discard_body(self) -> None:
        self._body_consumed = True
        try:
            length = self._content_length()
        except RequestError:
            return
        if length > DRAIN_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            chunk = self.rfile.read(min(length, 65536))
            if not chunk:
                break
            length -= len(chunk)

    def _read_body(self, limit: int) -> bytes:
        length = self._content_length()
        encoding = (self.headers.get("Content-Encoding") or "identity").strip().lower()
        too_large = RequestError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", f"the limit is {limit} bytes"
        )
        if encoding not in ("identity", "gzip"):
            self._discard_body()
            raise RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "bad_encoding", f"encoding {encoding}"
            )
        if length > limit:
            self._discard_body()
            raise too_large
        self._body_consumed = True
        raw = self.rfile.read(length)
        if len(raw) != length:
            self.close_connection = True
            raise RequestError(HTTPStatus.BAD_REQUEST, "truncated", "body shorter than declared")
        if encoding == "identity":
            return raw
        # Decompress at most limit + 1 bytes: a zip bomb costs us no more than the limit.
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        try:
            text = inflater.decompress(raw, limit + 1)
        except zlib.error as exc:
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad_gzip", str(exc)) from exc
        if len(text) > limit or inflater.unconsumed_tail:
            raise too_large
        if not inflater.eof:
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad_gzip", "truncated gzip stream")
        return text

    def _land(self, path_type: str | None, body: dict[str, Any], endpoint: str) -> Outcome:
        config = self.server.config
        received_at = datetime.now(UTC).replace(tzinfo=None)
        if path_type is None:
            messages = body.get("batch")
            if not isinstance(messages, list):
                self._quarantine_body(redacted(body), "invalid_batch: `batch` must be a list")
                raise RequestError(HTTPStatus.BAD_REQUEST, "invalid_batch", "batch must be a list")
        else:
            messages = [body]
        rows: list[EventRow] = []
        rejections: list[Rejection] = []
        for message in messages:
            result = normalize(
                message,
                path_type=path_type,
                sent_at=body.get("sentAt"),
                received_at=received_at,
                max_bytes=config.max_message_bytes,
            )
            (rows if isinstance(result, EventRow) else rejections).append(result)  # type: ignore[arg-type]
        submission = Submission(rows, rejections, endpoint)
        self._wait(submission)
        return Outcome(submission.landed, submission.duplicates, len(rejections))

    def _quarantine_body(self, text: bytes | str, reason: str) -> None:
        payload = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for key in self.server.config.write_keys:
            payload = payload.replace(key, "[write key]")
        path = self.path.split("?")[0]
        self._wait(Submission([], [Rejection(reason, payload)], path))

    def _wait(self, submission: Submission) -> None:
        if not submission.rows and not submission.rejections:
            return
        try:
            self.server.writer.submit(submission)
        except WriterBusyError as exc:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "busy", str(exc)) from exc
        if not submission.done.wait(LAND_TIMEOUT_SECONDS):
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "busy", "landing is slow; retry")
        if submission.error is not None:
            raise RequestError(
                HTTPStatus.INTERNAL_SERVER_ERROR, "landing_failed", "could not land; retry"
            )

    # -- responses -----------------------------------------------------------------------

    def _send_error(self, exc: RequestError) -> None:
        body = {"success": False, "code": exc.code, "message": exc.message}
        headers = {"Retry-After": "1"} if exc.status == HTTPStatus.SERVICE_UNAVAILABLE else {}
        self._send(exc.status, body, headers)

    def _send(
        self, status: HTTPStatus, body: dict[str, Any] | None, headers: dict[str, str] | None = None
    ) -> None:
        data = b"" if body is None else json.dumps(body).encode()
        if self.request_version == "HTTP/0.9":  # a bare `GET /health`: no headers then
            self.log_request(status)
            self.wfile.write(data)
            return
        self.send_response(status)
        self._headers_buffer.append(_FIXED_HEADERS)  # type: ignore[attr-defined]
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if self.close_connection:
            self.send_header("Connection", "close")
        # Headers and body in one write: one send, and the client reads one segment.
        self._headers_buffer.append(b"\r\n" + data)  # type: ignore[attr-defined]
        self.flush_headers()


class Collector:
    """A running collector: the writer thread plus the HTTP server thread.

    `with Collector(config) as c: requests.post(c.url + "/v1/batch", …)`; the CLI calls
    `serve_forever` instead of `start`.
    """

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.writer = LandingWriter(config)
        self._server: CollectorServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the collector is not running")
        address = self._server.server_address
        host = address[0].decode() if isinstance(address[0], bytes) else str(address[0])
        host = f"[{host}]" if ":" in host else host  # IPv6 literal
        return f"http://{host}:{address[1]}"

    def bind(self) -> None:
        """Start the writer and bind the port (so `url` is known before serving)."""
        self.writer.start()
        try:
            self._server = CollectorServer(self.config, self.writer)
        except BaseException:
            self.writer.stop()
            raise

    def start(self) -> Collector:
        self.bind()
        assert self._server is not None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        assert self._server is not None, "call bind() first"
        self._server.serve_forever(poll_interval=0.2)

    def shutdown(self) -> None:
        """Ask serve_forever to return (from another thread or a signal handler's thread)."""
        if self._server is not None:
            self._server.shutdown()

    def stop(self) -> None:
        """Stop accepting, land what is queued, release the folder."""
        if self._server is not None:
            if self._thread is not None:
                self._server.shutdown()
                self._thread.join(10)
                self._thread = None
            self._server.server_close()
            self._server = None
        self.writer.stop()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
