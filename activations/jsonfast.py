"""JSON for the per-row hot path: orjson when installed (dagster-dbt brings it), else stdlib.

The drain parses one payload and the webhook encodes one record per member: at 100,000 rows/s
the stdlib's few microseconds per call are most of the budget.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

try:
    import orjson

    loads: Callable[[str | bytes], Any] = orjson.loads

    def dumps(obj: Any) -> bytes:
        return orjson.dumps(obj, default=str)

except ImportError:  # pragma: no cover - exercised only without orjson
    loads = json.loads

    def dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), default=str).encode()
