"""The collector hands landed rows to a subscribed worker (collector/handoff.py): the rows are
the files' rows, a lost subscription falls back to the files without losing or repeating a
row, and a worker that stops reading is dropped rather than waited for."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from collector_testkit import WRITE_KEY, make_config

from collector import handoff, landing
from collector.server import Collector
from journeys.sources import LandingSource


def _track(session: requests.Session, url: str, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        message_id = str(uuid.uuid4())
        answer = session.post(f"{url}/v1/track", json={
            "type": "track", "event": "Signed Up", "messageId": message_id,
            "anonymousId": f"a-{message_id}"}, timeout=10)
        assert answer.status_code == 200, answer.text
        ids.append(message_id)
    return ids


def _session() -> requests.Session:
    session = requests.Session()
    session.auth = (WRITE_KEY, "")
    return session


def _read_all(source: LandingSource, expected: int, mark: datetime | None = None,
              seconds: float = 10.0) -> tuple[pa.Table, datetime | None]:
    """Read as the fast path does, advancing the watermark, until `expected` rows came (and a
    little longer, so that a repeated row would show); the rows and the new watermark."""
    tables, rows = [], 0
    deadline = time.monotonic() + seconds
    settle = None
    while time.monotonic() < deadline and (settle is None or time.monotonic() < settle):
        source.wait(0.05)
        table = source.read(mark, None)
        if table.num_rows:
            tables.append(table)
            rows += table.num_rows
            mark = table.column("received_at")[-1].as_py()
        if rows >= expected and settle is None:
            settle = time.monotonic() + 0.5
    got = pa.concat_tables(tables) if tables else landing.EVENT_SCHEMA.empty_table()
    return got, mark


def _subscribed(source: LandingSource, collector: Collector, count: int = 1) -> None:
    deadline = time.monotonic() + 5
    while collector.writer.handoff_subscribers < count:
        assert time.monotonic() < deadline, "the source never subscribed"
        source.wait(0.01)


def test_rows_come_over_the_handoff_equal_to_the_files(landing_dir: Path) -> None:
    with Collector(make_config(landing_dir)) as collector, _session() as session:
        source = LandingSource(landing_dir, handoff=True)
        try:
            _subscribed(source, collector)
            ids = _track(session, collector.url, 30)
            handed, _ = _read_all(source, 30)
        finally:
            source.close()
    assert sorted(handed.column("message_id").to_pylist()) == sorted(ids)
    assert source.files_handed == collector.writer.files_written
    assert source.files_read == 0, "files were read back although their rows were handed over"
    files = sorted((landing_dir / landing.EVENTS).glob("0*[0-9].parquet"))
    on_disk = pa.concat_tables([pq.read_table(f) for f in files if f.name != landing.SCHEMA_FILE])
    key = [("received_at", "ascending"), ("message_id", "ascending")]
    assert handed.sort_by(key).equals(on_disk.cast(landing.EVENT_SCHEMA).sort_by(key))


def test_a_lost_subscription_reads_the_files_exactly_once(
    landing_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(handoff.HandoffClient, "RETRY_SECONDS", 0.05)
    source = LandingSource(landing_dir, handoff=True)
    try:
        with Collector(make_config(landing_dir)) as collector, _session() as session:
            _subscribed(source, collector)
            first = _track(session, collector.url, 5)
            got, mark = _read_all(source, 5)
        # Landed while no collector hands anything over: only the files know these.
        with Collector(make_config(landing_dir, handoff=False)) as collector, \
                _session() as session:
            unhanded = _track(session, collector.url, 7)
        with Collector(make_config(landing_dir)) as collector, _session() as session:
            rest, mark = _read_all(source, 7, mark)
            _subscribed(source, collector)
            after = _track(session, collector.url, 4)
            tail, _ = _read_all(source, 4, mark)
    finally:
        source.close()
    assert sorted(got.column("message_id").to_pylist()) == sorted(first)
    assert sorted(rest.column("message_id").to_pylist()) == sorted(unhanded)
    assert sorted(tail.column("message_id").to_pylist()) == sorted(after)
    assert source.files_read == 7, "the unhanded files are read once each, nothing else"
    assert source.files_handed == 5 + 4


def test_a_worker_that_stops_reading_is_dropped_not_waited_for(landing_dir: Path) -> None:
    with Collector(make_config(landing_dir)) as collector, _session() as session:
        source = LandingSource(landing_dir, handoff=True)
        stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            stalled.connect(str(handoff.socket_path(landing_dir)))
            deadline = time.monotonic() + 5
            while collector.writer.handoff_subscribers < 1:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            _subscribed(source, collector, count=2)
            # The stalled socket never reads: its buffer fills within a few frames. Every
            # request is still answered (the writer never blocks on a subscriber).
            ids = _track(session, collector.url, 300)
            got, _ = _read_all(source, 300)
            assert collector.writer.handoff_subscribers == 1, "the stalled subscriber stayed"
        finally:
            stalled.close()
            source.close()
    assert sorted(got.column("message_id").to_pylist()) == sorted(ids)
