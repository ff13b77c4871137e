"""The single writer: group commit, deduplication on messageId, and durable landing.

Every accepted request becomes a `Submission` on a bounded queue. One thread takes whatever is
queued (group commit: requests that arrive while a file is being written share the next file,
which costs no extra latency when idle and bounds the file count when busy), drops messageIds it
has already landed, stamps one received_at, writes the quarantine file and the events file
atomically, and only then releases the waiting requests.

Busy linger (`busy_linger_seconds`, 3 ms): a file costs the writer about 1.2 ms of CPU whatever
its size (Arrow table, Parquet encoding, two fsyncs), and at 500 single-event requests per
second, taking only what was already queued gave ~1.6 events per file: the writer was most of
the collector's CPU. So when a request arrives within the linger of the previous one, the
writer waits until the linger has passed since that request's arrival before writing; at
500/s a file then carries ~3 events. An idle collector (a request after a quiet gap) never
waits, and no request waits more than the linger for the writer to start its file.

Being the only writer of its folder is what makes the received_at stamps and the file names
strictly increasing, which the fast path's watermark relies on: a lock file enforces it.
"""

from __future__ import annotations

import fcntl
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO

import pyarrow as pa

from collector import landing
from collector.config import CollectorConfig, ConfigError
from collector.handoff import HandoffServer
from collector.messages import EventRow, Rejection

log = logging.getLogger(__name__)
WRITER_LOCK = ".collector.lock"
_EPOCH = datetime(1970, 1, 1)
# Column statistics of a group commit's file: the times readers filter on (landing.write_atomic).
HOT_STATISTICS = ["received_at", "timestamp"]


@dataclass
class Submission:
    """One request's messages, and the writer's answer once they are durable."""

    rows: list[EventRow]
    rejections: list[Rejection]
    endpoint: str
    landed: int = 0
    duplicates: int = 0
    error: BaseException | None = None
    # When the request reached the writer's queue (monotonic): the busy linger counts from it.
    arrived: float = field(default_factory=time.monotonic)
    # Set by the HTTP server: called on its event loop once the writer has answered.
    callback: Callable[[Submission], None] | None = None


class WriterBusyError(RuntimeError):
    """The queue is full: the caller should answer 503 so the SDK retries later."""


class RecentIds:
    """A bounded set of messageIds, oldest forgotten first."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, message_id: str) -> None:
        if self._capacity == 0:
            return
        self._ids[message_id] = None
        self._ids.move_to_end(message_id)
        while len(self._ids) > self._capacity:
            self._ids.popitem(last=False)


def ns_to_datetime(ns: int) -> datetime:
    """Epoch nanoseconds to naive UTC at microsecond precision (what Parquet stores)."""
    return _EPOCH + timedelta(microseconds=ns // 1000)


class LandingWriter:
    """Owns the landing folder for the life of one collector."""

    def __init__(self, config: CollectorConfig) -> None:
        self._config = config
        self._queue: queue.Queue[Submission | None] = queue.Queue(config.queue_capacity)
        self._thread: threading.Thread | None = None
        self._lock_handle: IO[str] | None = None
        self._recent = RecentIds(config.dedup_capacity)
        self._last_ns = 0
        self._handoff: HandoffServer | None = None
        self.files_written = 0
        # Called from this thread with every answered group commit (landed, or `error` set):
        # the event-loop server hands the whole batch to its loop with one wake-up.
        self.notify: Callable[[list[Submission]], None] | None = None

    def start(self) -> None:
        """Take the folder's lock, clean up after a crash, rebuild dedup memory, start."""
        landing.ensure_layout(self._config.landing_dir)
        handle = open(self._config.landing_dir / WRITER_LOCK, "a+")  # noqa: SIM115
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            handle.close()
            raise ConfigError(
                f"Another collector is landing into {self._config.landing_dir}; one collector "
                "per landing folder (set HEADWATER_LANDING_DIR for a second one)."
            ) from exc
        self._lock_handle = handle
        removed = landing.remove_temporaries(self._config.landing_dir)
        if removed:
            log.warning("Removed %d unacknowledged temporary files left by a crash.", removed)
        ids, newest_ns = landing.recent_message_ids(
            self._config.landing_dir, self._config.dedup_capacity
        )
        for message_id in reversed(ids):
            self._recent.add(message_id)
        self._last_ns = newest_ns
        if self._config.handoff:
            self._handoff = HandoffServer.open(self._config.landing_dir)
        self._thread = threading.Thread(target=self._run, name="landing-writer", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Land everything already queued, then stop and release the folder."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None
        if self._handoff is not None:
            self._handoff.close()
            self._handoff = None
        if self._lock_handle is not None:
            fcntl.flock(self._lock_handle, fcntl.LOCK_UN)
            self._lock_handle.close()
            self._lock_handle = None

    @property
    def handoff_subscribers(self) -> int:
        """Workers subscribed to this writer's handoff (collector/handoff.py)."""
        return 0 if self._handoff is None else self._handoff.subscribers

    def submit(self, submission: Submission) -> None:
        """Queue a request's messages; raises WriterBusyError when the queue is full."""
        if self._thread is None:
            raise WriterBusyError("the writer is not running")
        try:
            self._queue.put_nowait(submission)
        except queue.Full as exc:
            raise WriterBusyError("landing queue is full") from exc

    def _run(self) -> None:
        window = self._config.group_commit_seconds
        linger = self._config.busy_linger_seconds if self._config.group_commit else 0.0
        last_arrival = float("-inf")
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            deadline = time.monotonic() + window
            if first.arrived - last_arrival < linger:
                # Busy: requests come faster than the linger, so the next is likely within it.
                deadline = max(deadline, first.arrived + linger)
            last_arrival = first.arrived
            # Take what is already waiting (and, with a window, what arrives within it).
            while self._config.group_commit:
                remaining = deadline - time.monotonic()
                try:
                    item = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
                last_arrival = item.arrived
            self._commit(batch)

    def _commit(self, batch: list[Submission]) -> None:
        try:
            self._land(batch)
        except BaseException as exc:  # noqa: BLE001 - every waiter must get an answer
            log.exception("Landing failed; the requests get 500 and their SDKs retry.")
            for submission in batch:
                submission.error = exc
        finally:
            notify = self.notify
            if notify is not None:
                notify(batch)

    def _stamp(self) -> int:
        # Microsecond resolution (Parquet timestamp[us]), strictly increasing even if the
        # clock steps back, so names and received_at order the files.
        now = time.time_ns() // 1000 * 1000
        self._last_ns = max(now, self._last_ns + 1000)
        return self._last_ns

    def _land(self, batch: list[Submission]) -> None:
        fresh: list[EventRow] = []
        seen: set[str] = set()
        for submission in batch:
            for row in submission.rows:
                if row.message_id in self._recent or row.message_id in seen:
                    submission.duplicates += 1
                    continue
                seen.add(row.message_id)
                fresh.append(row)
                submission.landed += 1
        rejected = [(s.endpoint, r) for s in batch for r in s.rejections]
        if not fresh and not rejected:
            return
        stamp = self._stamp()
        received_at = ns_to_datetime(stamp)
        name = landing.file_name(stamp, stamp)
        fsync = self._config.fsync
        if rejected:
            landing.write_atomic(
                self._config.quarantine_dir,
                name,
                _quarantine_table(rejected, received_at),
                fsync=fsync,
            )
        if fresh:
            table = _events_table(fresh, received_at)
            landing.write_atomic(
                self._config.events_dir, name, table, fsync=fsync, compression="snappy",
                statistics=HOT_STATISTICS,
            )
            self.files_written += 1
            if self._handoff is not None:
                self._handoff.publish(name, table)  # durable now: a worker may act on it
        for message_id in seen:
            self._recent.add(message_id)


def _events_table(rows: list[EventRow], received_at: datetime) -> pa.Table:
    columns: dict[str, list[object]] = {name: [] for name in landing.EVENT_SCHEMA.names}
    for row in rows:
        for name in landing.EVENT_SCHEMA.names[:-1]:
            columns[name].append(getattr(row, name))
        columns["received_at"].append(received_at)
    return pa.table(columns, schema=landing.EVENT_SCHEMA)


def _quarantine_table(rejected: list[tuple[str, Rejection]], received_at: datetime) -> pa.Table:
    return pa.table(
        {
            "received_at": [received_at] * len(rejected),
            "reason": [r.reason for _, r in rejected],
            "message_id": [r.message_id for _, r in rejected],
            "type": [r.type for _, r in rejected],
            "endpoint": [endpoint for endpoint, _ in rejected],
            "payload": [r.payload for _, r in rejected],
        },
        schema=landing.QUARANTINE_SCHEMA,
    )
