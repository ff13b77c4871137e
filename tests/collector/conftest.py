"""A real collector on 127.0.0.1 (port 0) landing into a temporary folder, read with DuckDB."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Until the packaging lists `collector*`, an installed headwater does not expose it.
REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from collector_testkit import make_config  # noqa: E402

from collector.server import Collector  # noqa: E402


@pytest.fixture
def landing_dir(tmp_path: Path) -> Path:
    return tmp_path / "landing"


@pytest.fixture
def collector(landing_dir: Path) -> Iterator[Collector]:
    with Collector(make_config(landing_dir)) as running:
        yield running
