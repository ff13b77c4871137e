"""The Segment HTTP Tracking API on one asyncio event loop (uvloop, httptools' parser).

Why not the standard library's ThreadingHTTPServer, which this replaced: measured at 500
single-event requests per second, the collector took ~1.4 ms of CPU per event, as much as the
fast-path worker, on a 2-core box that also runs dbt; most of it was per request, not per
event: email.parser building a Message for the headers, a thread per keep-alive connection
contending for the GIL, a condition-variable wake-up to hand each answer back, several small
writes. Here one thread parses every connection with httptools (C), keeps only the four
headers it reads, and writes each answer with one call. The landing writer's fsync still runs
in its own thread (collector/writer.py); a request is answered from the loop when the writer
reports, once per group commit, that its messages are durable. Answering only after fsync is
unchanged.

Answers (Segment's bodies, so SDKs read them unchanged):
- 200 `{"success": true}` once every message of the request is durable: landed in events/, or
  quarantined with its reason (a bad message inside a good request is the sender's bug that a
  retry cannot fix; Segment also answers 200). Header `X-Headwater-Quarantined` counts them.
- 400 invalid JSON or a body that is not a Segment call (the body is quarantined when the
  sender is authenticated), or a malformed HTTP request; 401 missing or wrong write key, 404
  unknown path, 411 no Content-Length (chunked bodies included), 413 body over the limit (also
  after gzip decompression), 415 unknown Content-Encoding, 431 request line and headers over
  64 KiB, 501 a method other than POST, GET and OPTIONS, 503 when the landing queue is full or
  landing takes over 30 s (SDKs retry), 500 when landing failed.
  Error bodies are `{"success": false, "code": …, "message": …}` (analytics-python reads both).
- OPTIONS answers 204 and every answer carries the CORS headers (analytics.js posts from
  browsers, cross-origin); `GET /health` answers `{"ok": true}`.

Connections: HTTP/1.1 keep-alive (SDKs reuse theirs) with TCP_NODELAY; pipelined requests are
answered in order, one at a time. A refused body of up to 8 MiB is read and dropped so that the
connection stays usable and the client reads our answer instead of a reset; anything larger,
and any request whose framing cannot be trusted (no length, chunked, a parse error), is answered
and the connection closed. A connection idle for 30 s (mid-request included) is closed, so a
client that stops sending cannot hold memory forever. HTTP/0.9 is not spoken.
Write keys are never logged or stored; request logging carries the path and status only.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, cast

import httptools
import uvloop

from collector.config import CollectorConfig
from collector.messages import EventRow, Rejection, loads, normalize, redacted
from collector.request import (
    WANTED_HEADERS,
    Request,
    RequestError,
    basic_auth_key,
    framing_error,
    request_body,
)
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
# Request line plus headers; http.server allowed 64 KiB per line and 100 lines, we bound the sum.
HEADER_LIMIT = 64 * 1024
# Content type and CORS (analytics.js posts from browsers, cross-origin), on every answer.
_FIXED_HEADERS = (
    b"Content-Type: application/json\r\n"
    b"Access-Control-Allow-Origin: *\r\n"
    b"Access-Control-Allow-Headers: Content-Type, Authorization\r\n"
    b"Access-Control-Allow-Methods: POST, OPTIONS\r\n"
)
_SERVER = b"Server: headwater-collector\r\n"
_SUCCESS = json.dumps({"success": True}).encode()
# How long a request waits for its messages to land before answering 503 (SDKs retry, dedup).
LAND_TIMEOUT_SECONDS = 30.0
# A connection with no bytes for this long is closed, unless it is waiting for its landing.
IDLE_TIMEOUT_SECONDS = 30.0
# Pipelined requests parsed ahead of the one being answered before we stop reading.
MAX_QUEUED_REQUESTS = 16
# How often timeouts are checked: one timer for the server, not one per request.
SWEEP_SECONDS = 1.0


class _Dates:
    """The Date header, formatted once per second rather than per answer."""

    def __init__(self) -> None:
        self._second = -1
        self._header = b""

    def header(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._header = b"Date: " + formatdate(now, usegmt=True).encode() + b"\r\n"
        return self._header


class CollectorProtocol(asyncio.Protocol):
    """One connection: parse with httptools, answer requests in order, one at a time."""

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.current: Request | None = None
        self.queue: deque[Request] = deque()
        # The request waiting for its messages to land, and its submission to the writer.
        self.waiting: Submission | None = None
        self.waiting_request: Request | None = None
        self.waiting_since = 0.0
        self.last_active = time.monotonic()
        self.broken = False  # framing lost: no further bytes are parsed
        self.paused = False

    @property
    def busy(self) -> bool:
        """A request is waiting for its messages to land: later ones wait their turn."""
        return self.waiting is not None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; they have its methods.
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            # Without NODELAY, Nagle plus the client's delayed ACK can add ~40 ms to an answer.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        self.transport = None
        self.queue.clear()
        # Its messages still land; nobody is left to tell.
        self.waiting = self.waiting_request = None

    def data_received(self, data: bytes) -> None:
        if self.broken:
            return
        self.last_active = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(RequestError(
                HTTPStatus.BAD_REQUEST, "bad_request", "protocol upgrades are not supported",
                close=True,
            ))
        except httptools.HttpParserError as exc:
            text = str(exc)
            code = "bad_length" if "content-length" in text.lower() else "bad_request"
            self._fail(RequestError(HTTPStatus.BAD_REQUEST, code, text, close=True))
        self._next()

    # -- httptools callbacks ---------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.current = Request()

    def on_url(self, url: bytes) -> None:
        request = self.current
        assert request is not None
        request.url += url
        request.header_bytes += len(url)
        if request.header_bytes > HEADER_LIMIT:
            self._too_long_headers()

    def on_header(self, name: bytes, value: bytes) -> None:
        request = self.current
        assert request is not None
        request.header_bytes += len(name) + len(value)
        if request.header_bytes > HEADER_LIMIT:
            self._too_long_headers()
            return
        slot = WANTED_HEADERS.get(name.lower())
        if slot is not None and getattr(request, slot) is None:
            setattr(request, slot, value)

    def on_headers_complete(self) -> None:
        request = self.current
        assert request is not None
        request.method = self.parser.get_method()
        request.keep_alive = self.parser.should_keep_alive()
        if request.method == b"POST":
            request.error = self._early_error(request)
            if request.error is not None and request.error.close:
                # Nothing after these headers can be trusted (or it is too large to read):
                # answer once earlier requests are, then close.
                self._fail(request.error, request)
            elif (
                request.error is None and request.expect is not None
                and request.expect.lower() == b"100-continue"
                and self.transport is not None and not self.busy and not self.queue
            ):
                # Only when nothing is being answered: an interim answer must not overtake.
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self.current
        if request is not None and request.error is None:
            request.chunks.append(body)
            request.size += len(body)

    def on_message_complete(self) -> None:
        request = self.current
        self.current = None
        if request is None or self.broken:
            return
        self.queue.append(request)
        if len(self.queue) >= MAX_QUEUED_REQUESTS and self.transport and not self.paused:
            self.paused = True
            self.transport.pause_reading()

    # -- request steps -------------------------------------------------------------------

    def _too_long_headers(self) -> None:
        self._fail(RequestError(
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large",
            f"request line and headers over {HEADER_LIMIT} bytes", close=True,
        ))

    def _fail(self, error: RequestError, request: Request | None = None) -> None:
        """Queue a final answer; parse nothing more from this connection."""
        if self.broken:
            return
        self.broken = True
        request = request or self.current or Request()
        request.error = error
        request.keep_alive = False
        self.current = None
        self.queue.append(request)
        if self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def _early_error(self, request: Request) -> RequestError | None:
        """What the headers alone decide, in the order the checks were always made."""
        path = request.path
        if path not in ROUTES:
            return self._drained(request, RequestError(
                HTTPStatus.NOT_FOUND, "not_found", f"unknown path {path}"
            ))
        try:
            header_key = request.header_key = basic_auth_key(request.authorization)
        except RequestError as exc:
            return self._drained(request, exc)
        if header_key is not None and not self.server.accepted(header_key):
            return self._drained(request, RequestError(
                HTTPStatus.UNAUTHORIZED, "unauthorized", "invalid write key"
            ))
        framing = framing_error(request)
        if framing is not None:
            return framing
        encoding = (request.content_encoding or b"identity").strip().lower()
        if encoding not in (b"identity", b"gzip"):
            return self._drained(request, RequestError(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "bad_encoding",
                f"encoding {encoding.decode('latin-1')}",
            ))
        limit = self.server.limit(ROUTES[path])
        if int(request.content_length or b"0") > limit:
            return self._drained(request, RequestError(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too_large", f"the limit is {limit} bytes"
            ))
        return None

    @staticmethod
    def _drained(request: Request, error: RequestError) -> RequestError:
        """The error, closing the connection when the body cannot (or should not) be read."""
        if framing_error(request) is not None or int(request.content_length or 0) > DRAIN_LIMIT:
            error.close = True
        return error

    def _next(self) -> None:
        """Answer queued requests in order until one has to wait for the writer."""
        while self.queue and not self.busy and self.transport is not None:
            request = self.queue.popleft()
            try:
                submission = self._handle(request)
            except RequestError as exc:
                self._send_error(request, exc)
                continue
            except Exception:  # noqa: BLE001 - a bug must not leave the client hanging
                log.exception("Request handling failed.")
                self._send_error(request, RequestError(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "internal", "internal error", close=True
                ))
                continue
            if submission is not None:
                self.waiting = submission
                self.waiting_request = request
                self.waiting_since = time.monotonic()
                return
        if self.paused and not self.broken and not self.busy and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()

    def _handle(self, request: Request) -> Submission | None:
        """Answer now (returns None) or return the submission the answer waits for."""
        if request.error is not None:
            raise request.error
        if request.method == b"OPTIONS":
            self._send(request, HTTPStatus.NO_CONTENT, b"")
            return None
        if request.method == b"GET":
            if request.path == "/health":
                self._send(request, HTTPStatus.OK, b'{"ok": true}')
                return None
            raise RequestError(HTTPStatus.NOT_FOUND, "not_found", "unknown path")
        if request.method != b"POST":
            raise RequestError(
                HTTPStatus.NOT_IMPLEMENTED, "not_implemented",
                f"unsupported method {request.method.decode('latin-1')}",
            )
        path = request.path
        path_type = ROUTES[path]
        limit = self.server.limit(path_type)
        header_key = request.header_key  # checked when the headers came
        text = request_body(request, limit)
        try:
            body = loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            if header_key is None:
                raise RequestError(
                    HTTPStatus.UNAUTHORIZED, "unauthorized", "no write key (Basic auth)"
                ) from exc
            error = RequestError(HTTPStatus.BAD_REQUEST, "invalid_json", str(exc))
            return self._quarantine_body(request, text, f"invalid_json: {exc}", error)
        if header_key is None:
            body_key = body.get("writeKey") if isinstance(body, dict) else None
            if not isinstance(body_key, str) or not self.server.accepted(body_key):
                raise RequestError(HTTPStatus.UNAUTHORIZED, "unauthorized", "invalid write key")
        if not isinstance(body, dict):
            error = RequestError(HTTPStatus.BAD_REQUEST, "invalid_body", "expected a JSON object")
            return self._quarantine_body(
                request, text, "invalid_body: the body must be a JSON object", error
            )
        return self._land(request, path_type, body, path)

    def _land(
        self, request: Request, path_type: str | None, body: dict[str, Any], endpoint: str
    ) -> Submission | None:
        config = self.server.config
        received_at = datetime.now(UTC).replace(tzinfo=None)
        if path_type is None:
            messages = body.get("batch")
            if not isinstance(messages, list):
                error = RequestError(
                    HTTPStatus.BAD_REQUEST, "invalid_batch", "batch must be a list"
                )
                return self._quarantine_body(
                    request, redacted(body), "invalid_batch: `batch` must be a list", error
                )
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

        def landed(done: Submission) -> None:
            self._send(
                request, HTTPStatus.OK, _SUCCESS,
                b"X-Headwater-Quarantined: %d\r\n" % len(done.rejections),
            )

        return self._submit(request, submission, landed)

    def _quarantine_body(
        self, request: Request, text: bytes | str, reason: str, error: RequestError
    ) -> Submission | None:
        payload = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        for key in self.server.config.write_keys:
            payload = payload.replace(key, "[write key]")
        path = request.url.split(b"?", 1)[0].decode("latin-1")
        submission = Submission([], [Rejection(reason, payload)], path)
        return self._submit(request, submission, lambda _: self._send_error(request, error))

    def _submit(
        self, request: Request, submission: Submission, then: Callable[[Submission], None]
    ) -> Submission | None:
        if not submission.rows and not submission.rejections:
            then(submission)
            return None

        def answer(done: Submission) -> None:
            if done is not self.waiting:
                return  # timed out and answered 503 already, or the client left
            self.waiting = self.waiting_request = None
            if done.error is not None:
                self._send_error(request, RequestError(
                    HTTPStatus.INTERNAL_SERVER_ERROR, "landing_failed", "could not land; retry"
                ))
            else:
                then(done)
            self._next()

        submission.callback = answer
        try:
            self.server.writer.submit(submission)
        except WriterBusyError as exc:
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, "busy", str(exc)) from exc
        return submission

    def land_timed_out(self) -> None:
        """The writer has not answered in LAND_TIMEOUT_SECONDS: 503, the SDK retries (its
        messages may still land later; the retry is deduplicated)."""
        request = self.waiting_request
        self.waiting = self.waiting_request = None
        self._send_error(request, RequestError(
            HTTPStatus.SERVICE_UNAVAILABLE, "busy", "landing is slow; retry"
        ))
        self._next()

    # -- responses -----------------------------------------------------------------------

    def _send_error(self, request: Request | None, exc: RequestError) -> None:
        body = json.dumps({"success": False, "code": exc.code, "message": exc.message}).encode()
        extra = b"Retry-After: 1\r\n" if exc.status == HTTPStatus.SERVICE_UNAVAILABLE else b""
        if exc.close and request is not None:
            request.keep_alive = False
        self._send(request, exc.status, body, extra)

    def _send(
        self, request: Request | None, status: HTTPStatus, data: bytes, extra: bytes = b""
    ) -> None:
        transport = self.transport
        if transport is None:
            return
        keep_alive = request.keep_alive if request is not None else True
        head = b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
        # Headers and body in one write: one send, and the client reads one segment.
        transport.write(b"".join((
            head, _SERVER, self.server.dates.header(), _FIXED_HEADERS,
            b"Content-Length: %d\r\n" % len(data), extra,
            b"" if keep_alive else b"Connection: close\r\n", b"\r\n", data,
        )))
        if log.isEnabledFor(logging.DEBUG) and request is not None:
            log.debug("%s %s %d", request.method.decode("latin-1"), request.path, status.value)
        if not keep_alive:
            self.queue.clear()
            self.broken = True
            transport.close()


class _Server:
    """What every connection shares: config, writer, the open connections, the Date header."""

    def __init__(self, config: CollectorConfig, writer: LandingWriter) -> None:
        self.config = config
        self.writer = writer
        self.connections: set[CollectorProtocol] = set()
        self.dates = _Dates()
        self._keys = [k.encode() for k in config.write_keys]

    def accepted(self, key: str) -> bool:
        # Compare against every key in constant time so timing does not reveal a prefix.
        raw = key.encode()
        matches = [hmac.compare_digest(raw, k) for k in self._keys]
        return any(matches)

    def limit(self, path_type: str | None) -> int:
        config = self.config
        return config.max_batch_bytes if path_type is None else config.max_message_bytes

    def landed(self, batch: list[Submission]) -> None:
        """On the loop: tell each request of a group commit that its messages are durable."""
        for submission in batch:
            if submission.callback is not None:
                submission.callback(submission)

    def sweep(self) -> None:
        now = time.monotonic()
        for conn in list(self.connections):
            if conn.waiting is not None:
                if now - conn.waiting_since > LAND_TIMEOUT_SECONDS:
                    conn.land_timed_out()
            elif now - conn.last_active > IDLE_TIMEOUT_SECONDS and conn.transport is not None:
                conn.transport.close()


class Collector:
    """A running collector: the writer thread plus the event loop's thread.

    `with Collector(config) as c: requests.post(c.url + "/v1/batch", …)`; the CLI calls
    `serve_forever` instead of `start`.
    """

    def __init__(self, config: CollectorConfig) -> None:
        self.config = config
        self.writer = LandingWriter(config)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._sock is None:
            raise RuntimeError("the collector is not running")
        address = self._sock.getsockname()
        host = str(address[0])
        host = f"[{host}]" if ":" in host else host  # IPv6 literal
        return f"http://{host}:{address[1]}"

    def bind(self) -> None:
        """Start the writer and bind the port (so `url` is known before serving)."""
        self.writer.start()
        try:
            family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
            self._sock = socket.create_server(
                (self.config.host, self.config.port), family=family, backlog=128
            )
        except BaseException:
            self.writer.stop()
            raise
        self._loop = uvloop.new_event_loop()

    def start(self) -> Collector:
        self.bind()
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self.serve_forever, args=(ready,), name="collector-loop", daemon=True
        )
        self._thread.start()
        ready.wait(10)
        return self

    def serve_forever(self, ready: threading.Event | None = None) -> None:
        assert self._sock is not None and self._loop is not None, "call bind() first"
        loop = self._loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()
            self._stopped.set()

    async def _serve(self, ready: threading.Event | None) -> None:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        shared = _Server(self.config, self.writer)
        self._stop = asyncio.Event()

        def notify(batch: list[Submission]) -> None:
            # From the writer's thread: one wake-up of the loop per group commit.
            with contextlib.suppress(RuntimeError):  # the loop has closed: clients are gone
                loop.call_soon_threadsafe(shared.landed, batch)

        self.writer.notify = notify
        server = await loop.create_server(lambda: CollectorProtocol(shared), sock=self._sock)

        def sweep() -> None:
            shared.sweep()
            handle[0] = loop.call_later(SWEEP_SECONDS, sweep)

        handle = [loop.call_later(SWEEP_SECONDS, sweep)]
        if ready is not None:
            ready.set()
        try:
            await self._stop.wait()
        finally:
            handle[0].cancel()
            server.close()
            # Requests already waiting for the writer get their answers (up to 10 s).
            deadline = loop.time() + 10
            while any(c.waiting for c in shared.connections) and loop.time() < deadline:
                await asyncio.sleep(0.01)
            for conn in list(shared.connections):
                if conn.transport is not None:
                    conn.transport.close()
            await asyncio.sleep(0)
            self.writer.notify = None

    def shutdown(self) -> None:
        """Ask serve_forever to return (from another thread or a signal handler's thread)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:
                return  # closed in between
            self._stopped.wait(15)

    def stop(self) -> None:
        """Stop accepting, land what is queued, release the folder."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(15)
            self._thread = None
        elif self._loop is not None and not self._loop.is_closed() and self._stop is None:
            self._loop.close()  # bound but never served
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self.writer.stop()

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
