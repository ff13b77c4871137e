"""The audience tests' session fixture; helpers live in audience_testkit.py.

They are imported by that unique name (not `from conftest import`): with pytest's importlib
mode several test folders have a conftest, and only a unique module name resolves to this one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audience_testkit import World, headwater_cli, make_project  # noqa: E402


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    """The tiny project, built by `headwater build` (audiences compiled first, then dbt)."""
    tmp = tmp_path_factory.mktemp("audiences")
    project = make_project(tmp / "project")
    w = World(project=project, warehouse=tmp / "wh.duckdb", tmp=tmp)
    done = headwater_cli(w, "build", *w.dbt_args())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Audiences: regenerated" in done.stdout
    return w
