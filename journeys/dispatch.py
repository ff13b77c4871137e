"""Journey steps leave through `activations/`: the same destination clients, HTTP layer (retries,
Retry-After, rate limits) and templates as syncs. This module builds a client per step, lazily,
turns a step's context into the destination's fields, and sends outbox rows (Dispatcher)."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from activations.config import SyncConfigError, resolve_destination_spec
from activations.destinations import destination_class
from activations.destinations.base import (
    Channel,
    Destination,
    DestinationConfigError,
    Outcome,
    Record,
    RecordResult,
    TransientDestinationError,
)
from activations.engine import consent_channel, http_client
from activations.http import HttpClient
from activations.templates import CompiledTemplates, compile_templates
from journeys.config import Journey, JourneyConfigError, Step

log = logging.getLogger(__name__)


class StepClient:
    """One step's destination, channel and field mapping."""

    def __init__(self, journey: Journey, step: Step) -> None:
        self.owner = f"journey {journey.name}, step {step.name}"
        action = step.action
        self.action = action
        self.cls = destination_class(action.destination.kind)
        try:
            channel = consent_channel(action.destination.kind, self.cls, action.channel)
        except ValueError as exc:
            raise JourneyConfigError(f"{self.owner}, field channel: {exc}") from None
        self.channel: Channel = channel
        try:
            self.templates: CompiledTemplates = compile_templates(self.owner, action.templates)
        except SyncConfigError as exc:
            raise JourneyConfigError(str(exc)) from None
        self.columns = {**action.identifiers, **action.fields}
        self._destination: Destination | None = None
        self._http: HttpClient | None = None

    def destination(self, environ: Mapping[str, str] | None = None) -> Destination:
        if self._destination is None:
            config = resolve_destination_spec(
                self.owner, self.action.destination, self.cls.default_base_url, environ
            )
            self._http = http_client(self.action.retry, None, self.cls.default_rate_limit)
            try:
                self._destination = self.cls(config, self._http)
            except DestinationConfigError as exc:
                self.close()
                raise JourneyConfigError(f"{self.owner}: {exc}") from None
        return self._destination

    def missing_identifier(self, context: Mapping[str, Any]) -> str | None:
        for dest, column in self.action.identifiers.items():
            if context.get(column) in (None, ""):
                return f"no {column} for identifier {dest}"
        return None

    def fields(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """Mapped columns and rendered templates (TemplateRenderError for a bad record)."""
        out = {dest: _jsonable(context.get(col)) for dest, col in self.columns.items()}
        out.update(self.templates.render(context))
        return out

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None
        self._destination = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


@dataclass
class SentChunk:
    """What the dispatcher did with one chunk of outbox rows: the rows it sent with one answer
    each, the rows it withheld (their instance exited before the request went out; they stay
    pending and are cancelled by the stepping thread) and, when the send raised something that
    is not a destination answer, that error, re-raised on the stepping thread."""

    journey: str
    step: str
    rows: list[tuple[Any, ...]]
    answers: list[RecordResult]
    withheld: list[tuple[Any, ...]] = field(default_factory=list)
    error: BaseException | None = None


@dataclass
class _Chunk:
    journey: str
    step: str
    action: str
    rows: list[tuple[Any, ...]]  # outbox rows: idempotency_key first, instance_id second
    records: list[Record]


class Dispatcher:
    """Sends outbox rows through their step's destination.

    In the foreground (the Dagster sensor, tests, the demo) `submit` sends at once and the
    chunk is done when it returns. In the background (the long-lived worker) each step client
    has a lane: a thread that sends its chunks in order, one request at a time, merging chunks
    that queued up behind a request into one batch. The stepping thread then goes back to
    reading events while the request is on the wire, and a destination that answers slowly
    (a vendor's 300 ms, a 429 with Retry-After) holds up only its own lane, never ingest, exits
    or the other steps. Only the stepping thread touches the journey state: lanes take
    records and give answers back (`completed`).

    Exits still win races: an instance that exits while a send of its own is queued or in
    flight is put in `withdrawn`, which a lane reads just before each request; a withheld row
    is never sent.
    """

    def __init__(self, *, background: bool) -> None:
        self.background = background
        self._lanes: dict[tuple[str, str], _Lane] = {}
        self._done: queue.SimpleQueue[SentChunk] = queue.SimpleQueue()
        # idempotency key -> instance id of every row submitted and not yet completed, and
        # per instance how many: written by the stepping thread only
        self._flying: dict[str, str] = {}
        self._by_instance: dict[str, int] = {}
        self.withdrawn: set[str] = set()
        # A lane writes a byte here when a chunk is done, so that a worker idling in poll()
        # wakes to record the answer instead of polling for it.
        self._wake: tuple[int, int] | None = None
        if background:
            self._wake = os.pipe()
            for fd in self._wake:
                os.set_blocking(fd, False)

    @property
    def wake_fd(self) -> int | None:
        """Readable once a chunk is done (background only); `clear_wake` empties it."""
        return None if self._wake is None else self._wake[0]

    def clear_wake(self) -> None:
        if self._wake is not None:
            with contextlib.suppress(BlockingIOError):
                while os.read(self._wake[0], 4096):
                    pass

    def flying(self, idempotency_key: str) -> bool:
        return idempotency_key in self._flying

    def instance_flying(self, instance_id: str) -> bool:
        return instance_id in self._by_instance

    def withdraw(self, instance_id: str) -> None:
        """The instance exited: whatever of it is still queued is not sent."""
        if instance_id in self._by_instance:
            self.withdrawn.add(instance_id)

    def submit(self, client: StepClient, destination: Destination, journey: str, step: str,
               action: str, rows: list[tuple[Any, ...]], records: list[Record]) -> None:
        for row in rows:
            self._flying[row[0]] = row[1]
            self._by_instance[row[1]] = self._by_instance.get(row[1], 0) + 1
        chunk = _Chunk(journey, step, action, rows, records)
        if not self.background:
            self._done.put(_send(destination, [chunk], self.withdrawn))
            return
        lane = self._lanes.get((journey, step))
        if lane is None:
            assert self._wake is not None
            lane = _Lane(f"{journey}.{step}", destination, client.cls.max_batch_size,
                         self.withdrawn, self._done, self._wake[1])
            self._lanes[(journey, step)] = lane
        lane.put(chunk)

    def completed(self) -> list[SentChunk]:
        """Chunks finished since the last call (stepping thread only)."""
        out: list[SentChunk] = []
        while True:
            try:
                sent = self._done.get_nowait()
            except queue.Empty:
                return out
            for row in (*sent.rows, *sent.withheld):
                instance_id = self._flying.pop(row[0], None)
                if instance_id is None:
                    continue
                left = self._by_instance[instance_id] - 1
                if left:
                    self._by_instance[instance_id] = left
                else:
                    del self._by_instance[instance_id]
                    self.withdrawn.discard(instance_id)
            out.append(sent)

    @property
    def busy(self) -> bool:
        return bool(self._flying)

    def wait(self, timeout: float) -> None:
        """Until every submitted chunk is done (or `timeout` seconds passed)."""
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            lane.idle.wait(max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 30.0) -> None:
        """Stop the lanes once their queues are empty. A lane still stuck in a request after
        `timeout` is left behind (a daemon thread): its rows stay pending in the outbox and go
        out again, with the same idempotency keys, on the next run."""
        for lane in self._lanes.values():
            lane.stop()
        deadline = time.monotonic() + timeout
        for lane in self._lanes.values():
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        left_behind = any(lane.thread.is_alive() for lane in self._lanes.values())
        self._lanes.clear()
        if self._wake is not None and not left_behind:  # a lane left behind may still write
            for fd in self._wake:
                os.close(fd)
            self._wake = None


class _Lane:
    """One step client's sending thread (see Dispatcher)."""

    def __init__(self, name: str, destination: Destination, max_batch: int,
                 withdrawn: set[str], done: queue.SimpleQueue[SentChunk], wake: int) -> None:
        self.destination = destination
        self.wake = wake
        self.max_batch = max_batch
        self.withdrawn = withdrawn
        self.done = done
        self._queue: deque[_Chunk] = deque()
        self._cv = threading.Condition()
        self._stopping = False
        self.idle = threading.Event()
        self.idle.set()
        self.thread = threading.Thread(target=self._run, name=f"dispatch {name}", daemon=True)
        self.thread.start()

    def put(self, chunk: _Chunk) -> None:
        with self._cv:
            self._queue.append(chunk)
            self.idle.clear()
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()

    def _take(self) -> list[_Chunk] | None:
        with self._cv:
            while not self._queue:
                self.idle.set()
                if self._stopping:
                    return None
                self._cv.wait()
            # chunks that queued up behind the last request go out as one batch
            batch = [self._queue.popleft()]
            size = len(batch[0].rows)
            while (self._queue and self._queue[0].action == batch[0].action
                   and size + len(self._queue[0].rows) <= self.max_batch):
                size += len(self._queue[0].rows)
                batch.append(self._queue.popleft())
            return batch

    def _run(self) -> None:
        while (batch := self._take()) is not None:
            self.done.put(_send(self.destination, batch, self.withdrawn))
            # A full pipe already holds a wake-up.
            with contextlib.suppress(BlockingIOError):
                os.write(self.wake, b"\0")


def _send(destination: Destination, chunks: list[_Chunk], withdrawn: set[str]) -> SentChunk:
    """One request for chunks of one step and action; rows of withdrawn instances are held
    back. A transient failure answers every record RETRY (pending, same key next time)."""
    first = chunks[0]
    rows: list[tuple[Any, ...]] = []
    records: list[Record] = []
    withheld: list[tuple[Any, ...]] = []
    for chunk in chunks:
        for row, record in zip(chunk.rows, chunk.records, strict=True):
            if row[1] in withdrawn:
                withheld.append(row)
            else:
                rows.append(row)
                records.append(record)
    sent = SentChunk(first.journey, first.step, rows, [], withheld)
    if not records:
        return sent
    try:
        sent.answers = destination.send_batch(records)
    except TransientDestinationError as exc:
        sent.answers = [RecordResult(r.idempotency_key, Outcome.RETRY, None, str(exc))
                        for r in records]
    except BaseException as exc:  # a bug, not an answer: the stepping thread raises it
        log.exception("dispatch of %s.%s failed", first.journey, first.step)
        sent.error = exc
    return sent
