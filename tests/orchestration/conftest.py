"""Fixtures for the orchestration tests (see orch_world.py)."""

from __future__ import annotations

import sys
from pathlib import Path

# Helpers live in uniquely named modules next to this file (other test folders have their own
# conftest, so `from conftest import ...` would be ambiguous).
sys.path.insert(0, str(Path(__file__).resolve().parent))

from orch_world import built, world  # noqa: E402, F401  (fixtures)
