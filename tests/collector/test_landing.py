"""Landing files without HTTP: atomic writes, compaction, and message normalization."""

from __future__ import annotations

import os
import shutil
from datetime import datetime
from pathlib import Path

import pytest
from collector_testkit import landed, make_config, python_message, python_post

from collector import landing
from collector.messages import EventRow, Rejection, normalize
from collector.server import Collector


def test_compact_merges_old_files_keeps_rows_and_heals_crash_copies(tmp_path: Path) -> None:
    landing_dir = tmp_path / "landing"
    sent = []
    with Collector(make_config(landing_dir)) as running:
        for _ in range(6):
            batch = [python_message() for _ in range(3)]
            assert python_post(running.url, batch).status_code == 200
            sent.extend(m["messageId"] for m in batch)
    before = landed(landing_dir)
    files = landing.landed_files(landing_dir / "events")
    assert len(files) == 6
    # A crash between the merged file's rename and the deletes leaves both: simulate it.
    shutil.copy(
        files[0].path,
        landing_dir
        / "events"
        / landing.file_name(files[0].first_ns, files[1].last_ns, compacted=True),
    )
    assert len(landed(landing_dir)) == len(before) + 3
    # Too recent: nothing happens by default.
    assert landing.compact(landing_dir).merged_files == 0
    result = landing.compact(landing_dir, min_age_seconds=0)
    assert (result.merged_files, result.written_files, result.dropped_copies) == (7, 1, 3)
    after = landed(landing_dir)
    assert after == before
    [merged] = landing.landed_files(landing_dir / "events")
    assert merged.compacted and (merged.first_ns, merged.last_ns) == (
        files[0].first_ns,
        files[-1].last_ns,
    )
    # A collector restarted on compacted files still remembers their ids.
    with Collector(make_config(landing_dir)) as running:
        assert python_post(running.url, [python_message(messageId=sent[0])]).ok
    assert len(landed(landing_dir)) == len(before)


def test_compact_respects_target_rows(tmp_path: Path) -> None:
    landing_dir = tmp_path / "landing"
    with Collector(make_config(landing_dir)) as running:
        for _ in range(4):
            assert python_post(running.url, [python_message() for _ in range(5)]).ok
    result = landing.compact(landing_dir, min_age_seconds=0, target_rows=10)
    assert (result.merged_files, result.written_files, result.rows) == (4, 2, 20)
    assert len(landed(landing_dir)) == 20


NOW = datetime(2026, 5, 1, 12, 0, 0)


def _normalize(msg: object, sent_at: object = None, path_type: str | None = None):
    return normalize(
        msg, path_type=path_type, sent_at=sent_at, received_at=NOW, max_bytes=32 * 1024
    )


def test_clock_skew_correction_like_segment() -> None:
    # Device clock 1 hour behind; it queued the event for 10 s before sending.
    msg = {
        "type": "track",
        "event": "E",
        "userId": "u",
        "messageId": "m",
        "originalTimestamp": "2026-05-01T11:00:00Z",
        "timestamp": "1999-01-01T00:00:00Z",
    }
    row = _normalize(msg, sent_at="2026-05-01T11:00:10Z")
    assert isinstance(row, EventRow) and row.timestamp == datetime(2026, 5, 1, 11, 59, 50)
    # A message's own sentAt wins over the batch's; offsets are converted to UTC.
    msg2 = {
        **msg,
        "originalTimestamp": "2026-05-01T13:00:00+02:00",
        "sentAt": "2026-05-01T11:00:01Z",
    }
    row2 = _normalize(msg2, sent_at="2026-05-01T11:00:10Z")
    assert isinstance(row2, EventRow) and row2.timestamp == datetime(2026, 5, 1, 11, 59, 59)
    # Without sentAt the client's time is kept; an unreadable sentAt only skips the correction.
    no_sent = _normalize({**msg, "originalTimestamp": None, "timestamp": "2026-04-30T08:00:00"})
    assert isinstance(no_sent, EventRow) and no_sent.timestamp == datetime(2026, 4, 30, 8)
    bad_sent = _normalize(
        {**msg, "originalTimestamp": None, "timestamp": "2026-04-30T08:00:00"}, sent_at="garbage"
    )
    assert isinstance(bad_sent, EventRow) and bad_sent.timestamp == datetime(2026, 4, 30, 8)


@pytest.mark.parametrize(
    "msg,reason",
    [
        ({"type": "track", "event": "E", "userId": 5, "messageId": 7}, None),
        ({"type": "track", "event": "E", "userId": True}, "invalid_userId"),
        ({"type": "track", "event": "  ", "userId": "u"}, "missing_event"),
        ({"type": "identify", "userId": " ", "anonymousId": ""}, "missing_identity"),
        ({"type": "identify", "userId": "u", "traits": "x"}, "invalid_traits"),
        ({"type": "identify", "userId": "u", "context": [1]}, "invalid_context"),
        ({"type": "identify", "userId": "u", "timestamp": 1714564800}, "invalid_timestamp"),
    ],
)
def test_message_rules(msg: dict, reason: str | None) -> None:
    result = _normalize(msg)
    if reason is None:
        assert isinstance(result, EventRow)
        assert (result.user_id, result.message_id) == ("5", "7")
    else:
        assert isinstance(result, Rejection) and result.reason.startswith(reason + ":")


def test_write_atomic_leaves_no_partial_file_on_failure(tmp_path: Path) -> None:
    landing.ensure_layout(tmp_path)
    folder = tmp_path / "events"
    with pytest.raises(Exception):  # noqa: B017 - any pyarrow error will do
        landing.write_atomic(folder, "1-1.parquet", "not a table")  # type: ignore[arg-type]
    assert not (folder / "1-1.parquet").exists()
    # The table is encoded before the temporary file is made; a crash's leftovers, if any,
    # are what the collector removes when it starts.
    landing.remove_temporaries(tmp_path)
    assert [p.name for p in folder.iterdir()] == [landing.SCHEMA_FILE]
    assert landed(tmp_path) == []


def test_start_up_leaves_the_temporaries_of_live_writers(tmp_path: Path) -> None:
    """A collector starting while a compaction writes its merged file must not take that file
    away; a crashed writer's leftovers go."""
    import subprocess
    import sys

    landing.ensure_layout(tmp_path)
    folder = tmp_path / "events"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead = folder / f".1-2.parquet.{int(gone.stdout)}-0a1b2c3d.tmp"
    live = folder / f".3-4-compacted.parquet.{os.getpid()}-0a1b2c3d.tmp"
    for path in (dead, live):
        path.write_bytes(b"partial")
    assert landing.remove_temporaries(tmp_path) == 1
    assert not dead.exists() and live.exists()


def test_processes_starting_together_can_each_lay_out_the_folder(tmp_path: Path) -> None:
    """The collector and the fast-path worker start at the same moment (the benchmark does):
    both may write the zero-row schema file, and neither may fail for it. Their temporaries
    once shared a name, so one rename took the other's file away (FileNotFoundError)."""
    import threading

    errors: list[BaseException] = []
    for attempt in range(30):
        folder = tmp_path / f"landing-{attempt}"
        start = threading.Barrier(4)

        def lay_out(folder: Path = folder, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                landing.ensure_layout(folder)
            except BaseException as exc:  # collected: a thread's exception would be lost
                errors.append(exc)

        threads = [threading.Thread(target=lay_out) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert (tmp_path / "landing-0" / landing.EVENTS / landing.SCHEMA_FILE).exists()
