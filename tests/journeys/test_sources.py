"""The landing source: exactly the rows past the watermark, across group-commit files,
compacted files that span the watermark, hidden temporaries and the schema file."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from collector import landing
from journeys import sources
from journeys.sources import LandingSource

T = datetime(2026, 11, 30, 12, 0)


def _file(folder: Path, stamps: list[datetime], *, compacted: bool = False) -> None:
    n = len(stamps)
    table = pa.table({
        "message_id": [str(uuid.uuid4()) for _ in stamps], "type": ["track"] * n,
        "event": ["Signed Up"] * n, "user_id": [None] * n, "anonymous_id": ["a"] * n,
        "previous_id": [None] * n, "traits": ["{}"] * n, "properties": ["{}"] * n,
        "context": ["{}"] * n, "timestamp": stamps, "received_at": stamps,
    }, schema=landing.EVENT_SCHEMA)
    name = landing.file_name(landing.to_ns(min(stamps)), landing.to_ns(max(stamps)),
                             compacted=compacted)
    landing.write_atomic(folder / landing.EVENTS, name, table, fsync=False)


@pytest.fixture(autouse=True, params=["file_by_file", "one_duckdb_query"])
def read_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every case through both ways of reading files: the rules must not depend on which."""
    monkeypatch.setattr(sources, "BATCH_READ_FILES",
                        10**9 if request.param == "file_by_file" else 1)
    return str(request.param)


def test_reads_each_file_once_past_the_watermark(tmp_path: Path) -> None:
    source = LandingSource(tmp_path)
    s = [T + timedelta(seconds=i) for i in range(8)]
    _file(tmp_path, [s[0], s[1], s[2]], compacted=True)  # merged old files
    _file(tmp_path, [s[3]])
    _file(tmp_path, [s[4]])
    (tmp_path / landing.EVENTS / ".half-written.parquet.tmp").write_bytes(b"partial")
    assert source.read(None, None).num_rows == 5
    assert source.read(s[4], None).num_rows == 0  # nothing is read twice
    # A file stamped before the watermark that a listing missed (readdir is not atomic with
    # renames) is read when it shows up, once.
    _file(tmp_path, [s[3] + timedelta(milliseconds=5)])
    _file(tmp_path, [s[5]])
    got = source.read(s[4], None).column("received_at").to_pylist()
    assert got == [s[3] + timedelta(milliseconds=5), s[5]]
    assert source.read(s[5], None).num_rows == 0


def test_checkpoint_survives_a_restart(tmp_path: Path) -> None:
    first = LandingSource(tmp_path)
    s = [T + timedelta(seconds=i) for i in range(3)]
    _file(tmp_path, [s[0]])
    _file(tmp_path, [s[1]])
    assert first.read(None, None).num_rows == 2
    again = LandingSource(tmp_path)
    again.restore(first.checkpoint()[0])
    _file(tmp_path, [s[2]])
    assert again.read(s[1], None).column("received_at").to_pylist() == [s[2]]


def test_compacted_file_spanning_the_watermark_gives_only_new_rows(tmp_path: Path) -> None:
    source = LandingSource(tmp_path, window_seconds=0)
    s = [T + timedelta(seconds=i) for i in range(4)]
    _file(tmp_path, s, compacted=True)
    assert source.read(s[1], None).column("received_at").to_pylist() == [s[2], s[3]]
