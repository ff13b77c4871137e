"""The report tests build their world with the measurement tests' builder (a unique module
name, tests/dbt_project/measurement/measurement_world.py) and share one build per session."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "dbt_project" / "measurement"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
