"""Shared helpers for the stand-in tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from activations.standins.specs import default_specs_dir


@pytest.fixture(scope="session")
def specs_available() -> Path:
    """The vendor specs directory; tests of spec validation skip (loudly) without it."""
    path = default_specs_dir()
    if not path.is_dir():
        pytest.skip(f"vendor specs not found at {path} (set HEADWATER_SPECS_DIR)")
    return path
