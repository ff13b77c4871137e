"""Fixtures for the sync engine tests: a real DuckDB file, audience tables, a receiver."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from batch_receiver import SECRET, BatchReceiver  # noqa: E402


@pytest.fixture
def receiver() -> Iterator[BatchReceiver]:
    r = BatchReceiver().start()
    yield r
    r.stop()


@pytest.fixture
def warehouse(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    yield con
    con.close()


@pytest.fixture
def hook_env(receiver: BatchReceiver) -> dict[str, str]:
    return {"HOOK_SECRET": SECRET, "HEADWATER_WEBHOOK_BASE_URL": receiver.url}
