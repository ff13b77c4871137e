"""The shared core of every stand-in: a threaded HTTP/1.1 server on 127.0.0.1, a router, JSON
helpers, fault injection around the handlers, a bounded request log, state snapshots and admin
routes under /__headwater/.

A stand-in subclass declares its routes and its vendor's answers for the cross-cutting cases
(401, 429, 5xx); the core decides when those cases happen.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from activations.standins.faults import Fault, FaultInjector, FaultPlan
from activations.standins.specs import OperationRef, SpecValidators, Violation

HOST = "127.0.0.1"  # never any other address
ADMIN_PREFIX = "/__headwater/"
# Hard cap on a request body, whatever the vendor allows: a runaway client cannot exhaust memory.
MAX_BODY_BYTES = 64 * 1024 * 1024
# An idle keep-alive connection is closed after this long, so handler threads are bounded.
IDLE_CONNECTION_SECONDS = 30.0
STATE_WRITE_INTERVAL = 0.25


class HTTPError(Exception):
    """Raised by handlers to answer with a vendor-shaped error."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status)
        self.response = response


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes
    params: dict[str, str] = field(default_factory=dict)
    _json: Any = field(default=None, repr=False)
    _parsed: bool = field(default=False, repr=False)

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)

    def arg(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body parsed as JSON; ValueError when it is not JSON."""
        if not self._parsed:
            self._json = json.loads(self.body) if self.body else None
            self._parsed = True
        return self._json

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("utf-8"), keep_blank_values=True)


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(
    status: int, obj: Any, headers: Mapping[str, str] | None = None,
    content_type: str = "application/json",
) -> Response:
    body = json.dumps(obj, separators=(",", ":")).encode() if obj is not None else b""
    out = {"Content-Type": content_type} if obj is not None else {}
    out.update(headers or {})
    return Response(status, body, out)


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Handler

    @classmethod
    def of(cls, method: str, template: str, handler: Handler) -> Route:
        """`/v3/lists/{id}/contacts` -> a regex with named groups (a group stops at / and :)."""
        regex = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/:]+)", re.escape(template))
        return cls(method.upper(), re.compile(f"^{regex}$"), handler)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    status: int | None  # None when the connection was dropped or timed out
    fault: str | None  # e.g. "5xx:after"
    at: float


@dataclass
class StandinConfig:
    """Settings common to every stand-in; vendors extend it with their own fields."""

    # full: every record validated against the vendor spec; sample: the first 50 of each list
    # (for benchmarks); off: none.
    validation: str = "full"
    log_size: int = 10_000
    specs_dir: str | None = None
    # Requests allowed per window; beyond it the vendor's 429 (None = never throttle by count).
    # The counters also feed the vendors' rate-limit headers.
    rate_limit: int | None = None
    rate_window_seconds: float = 1.0


class RateCounter:
    """Fixed-window request counter (vendors document fixed windows with a reset time)."""

    def __init__(self, limit: int | None, window: float) -> None:
        self.limit = limit
        self.window = window
        self._lock = threading.Lock()
        self._start = time.time()
        self._count = 0

    def hit(self) -> bool:
        """Count one request; False when it is over the limit."""
        with self._lock:
            now = time.time()
            if now - self._start >= self.window:
                self._start, self._count = now, 0
            self._count += 1
            return self.limit is None or self._count <= self.limit

    def status(self, default_limit: int) -> tuple[int, int, float]:
        """(limit, remaining, reset as epoch seconds)."""
        with self._lock:
            limit = self.limit if self.limit is not None else default_limit
            return limit, max(0, limit - self._count), self._start + self.window


class Standin:
    """Base class: one vendor's API on 127.0.0.1, in-process (context manager) or as a process."""

    name: ClassVar[str] = "base"
    config: StandinConfig

    def __init__(
        self,
        config: StandinConfig | None = None,
        faults: FaultPlan | None = None,
        port: int = 0,
        state_file: str | os.PathLike[str] | None = None,
    ) -> None:
        self.config = config or self.default_config()
        self.faults = FaultInjector(faults)
        self.lock = threading.RLock()
        self.specs = SpecValidators(Path(self.config.specs_dir) if self.config.specs_dir else None)
        self._port = port
        self._state_file = Path(state_file) if state_file else None
        self._log: deque[LoggedRequest] = deque(maxlen=self.config.log_size)
        self._routes = self.routes()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._stopping = threading.Event()
        self._dirty = threading.Event()
        self.rate = RateCounter(self.config.rate_limit, self.config.rate_window_seconds)
        self.request_count = 0

    # ---- what a vendor subclass provides ------------------------------------------------------
    @classmethod
    def default_config(cls) -> StandinConfig:
        return StandinConfig()

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def authenticate(self, req: Request) -> Response | None:
        """The vendor's answer to missing or wrong credentials, or None when they are fine."""
        return None

    def throttled(self, fault: Fault) -> Response:
        return json_response(429, {"error": "too many requests"})

    def server_error(self, fault: Fault) -> Response:
        return json_response(fault.status, {"error": "internal server error"})

    def extra_headers(self, req: Request, status: int) -> dict[str, str]:
        """Headers on every vendor response (rate-limit counters...)."""
        return {}

    def snapshot(self) -> dict[str, Any]:
        """The state as JSON-able data (what /__headwater/state and --state-file hold)."""
        return {}

    # ---- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"stand-in {self.name} is not started")
        return f"http://{HOST}:{self._server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def start(self) -> Standin:
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((HOST, self._port), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02},
            name=f"standin-{self.name}", daemon=True,
        )
        self._thread.start()
        if self._state_file is not None:
            self._writer = threading.Thread(
                target=self._write_loop, name=f"standin-{self.name}-state", daemon=True
            )
            self._writer.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._writer is not None:
            self._writer.join(timeout=5)
        if self._state_file is not None:
            self.write_state()
        self._server = None

    def __enter__(self) -> Standin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- faults and inspection ---------------------------------------------------------------
    def set_faults(self, plan: FaultPlan) -> None:
        self.faults.set_plan(plan)

    def script(self, fault: Fault, count: int = 1) -> None:
        """Answer the next `count` vendor requests with `fault`."""
        self.faults.script(fault, count)

    def violations(self, ref: OperationRef, body: Any) -> list[Violation]:
        """The body's violations of the vendor spec, per the configured validation mode."""
        return self.specs.validate(ref, body, self.config.validation)

    def request_log(self) -> list[LoggedRequest]:
        with self.lock:
            return list(self._log)

    def write_state(self) -> None:
        """Write the snapshot to the state file atomically (a reader never sees half a file)."""
        if self._state_file is None:
            return
        data = json.dumps(self.snapshot(), sort_keys=True, default=_json_default)
        directory = self._state_file.parent
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".standin-", suffix=".json")
        with os.fdopen(fd, "w") as fh:
            fh.write(data)
        os.replace(tmp, self._state_file)

    def _write_loop(self) -> None:
        # Debounced: a 100,000-member snapshot per request would make the stand-in the bottleneck.
        while not self._stopping.is_set():
            if self._dirty.wait(timeout=0.5):
                self._dirty.clear()
                self.write_state()
                self._stopping.wait(STATE_WRITE_INTERVAL)

    # ---- dispatch ----------------------------------------------------------------------------
    def _match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str], bool]:
        path_known = False
        for route in self._routes:
            m = route.pattern.match(path)
            if m:
                path_known = True
                if route.method == method:
                    return route.handler, m.groupdict(), True
        return None, {}, path_known

    def dispatch(self, req: Request) -> tuple[Response | None, Fault | None]:
        """The response to send (None = send nothing) and the fault that shaped it, if any."""
        if req.path.startswith(ADMIN_PREFIX):
            return self._admin(req), None
        handler, params, path_known = self._match(req.method, req.path)
        if handler is None:
            status = 405 if path_known else 404
            return json_response(status, {"error": "no such route", "path": req.path}), None
        req.params = params
        denied = self.authenticate(req)
        if denied is not None:
            return denied, None
        fault = self.faults.draw()
        if fault is None and not self.rate.hit():
            fault = Fault("429", retry_after=self.config.rate_window_seconds)
        if fault is not None and fault.phase == "before":
            return self._fault_response(fault), fault
        try:
            response = handler(req)
        except HTTPError as exc:
            response = exc.response
        self._dirty.set()
        if fault is not None:  # after: the work is done, the answer is lost
            return self._fault_response(fault), fault
        return response, None

    def _fault_response(self, fault: Fault) -> Response | None:
        if fault.kind == "429":
            return self.throttled(fault)
        if fault.kind == "5xx":
            return self.server_error(fault)
        if fault.kind == "timeout":
            self._stopping.wait(fault.timeout_seconds)
        return None  # timeout and drop: the connection closes without an answer

    def _admin(self, req: Request) -> Response:
        op = req.path[len(ADMIN_PREFIX):].rstrip("/")
        if op == "state" and req.method == "GET":
            return json_response(200, self.snapshot())
        if op == "state" and req.method == "POST":  # flush to the state file now
            self.write_state()
            return json_response(200, {"written": str(self._state_file)})
        if op == "faults" and req.method == "GET":
            return json_response(200, {"plan": self.faults.plan.to_json(),
                                       "scripted": self.faults.pending_scripted(),
                                       "injected": dict(self.faults.injected)})
        if op == "faults" and req.method == "POST":
            try:
                data = req.json() or {}
                if "plan" in data:
                    self.set_faults(FaultPlan.from_json(data["plan"]))
                if data.get("clear_script"):
                    self.faults.clear_script()
                for item in data.get("script", []):
                    self.script(Fault.from_json(item["fault"]), int(item.get("count", 1)))
            except (ValueError, TypeError, KeyError) as exc:
                return json_response(400, {"error": str(exc)})
            return json_response(200, {"plan": self.faults.plan.to_json()})
        if op == "log" and req.method == "GET":
            return json_response(200, [r.__dict__ for r in self.request_log()[-1000:]])
        return json_response(404, {"error": f"unknown admin route {op!r}"})

    def _record(self, req: Request, status: int | None, fault: Fault | None) -> None:
        entry = LoggedRequest(
            req.method, req.path, status,
            f"{fault.kind}:{fault.phase}" if fault else None, time.time(),
        )
        with self.lock:
            self._log.append(entry)
            self.request_count += 1


def _json_default(value: Any) -> Any:
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _make_handler(standin: Standin) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the benchmark reuses connections
        timeout = IDLE_CONNECTION_SECONDS
        # Headers and body go out in separate writes; with Nagle on, the body waits for the
        # client's delayed ACK (~40 ms a response on Linux), which no real vendor adds.
        disable_nagle_algorithm = True
        server_version = f"headwater-standin-{standin.name}"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass  # the request log replaces stderr noise

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES or length < 0:
                self.close_connection = True
                self._send(json_response(413, {"error": "request body too large"}))
                return
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                self.close_connection = True
                self._send(json_response(411, {"error": "Content-Length required"}))
                return
            body = self.rfile.read(length) if length else b""
            req = Request(
                self.command, split.path, parse_qs(split.query, keep_blank_values=True),
                self.headers, body,
            )
            try:
                response, fault = standin.dispatch(req)
            except Exception as exc:  # a stand-in bug must show up as a 500, not a hang
                response, fault = json_response(500, {"error": f"stand-in error: {exc!r}"}), None
            if response is None:
                standin._record(req, None, fault)
                self._drop()
                return
            if not req.path.startswith(ADMIN_PREFIX):
                response.headers.update(standin.extra_headers(req, response.status))
            standin._record(req, response.status, fault)
            self._send(response)

        def _send(self, response: Response) -> None:
            self.send_response(response.status)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)

        def _drop(self) -> None:
            self.close_connection = True
            try:
                # RST instead of FIN: the client sees a reset, as with a dying load balancer.
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve  # noqa: N815

    return _Handler
