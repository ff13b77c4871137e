"""Run one sync in a child process that SIGKILLs itself just before its N-th COMMIT.

The kill lands exactly between two of the plan's transactions (test_plan_chunks.py), which a
kill at a random time rarely hits. The connection is DuckDB's own, wrapped only to count
commits; everything else is the real engine.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import duckdb

from activations import plan as plan_sql
from activations.config import parse_syncs
from activations.engine import run_sync


class _KillAtCommit:
    def __init__(self, con: duckdb.DuckDBPyConnection, commit_no: int) -> None:
        self._con = con
        self._left = commit_no

    def execute(self, sql: str, *args: Any) -> Any:
        if sql.strip().lower() == "commit":
            self._left -= 1
            if self._left == 0:
                os.kill(os.getpid(), signal.SIGKILL)
        return self._con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def main() -> None:
    db, lock_dir, spec_json, chunk_rows, kill_at = sys.argv[1:6]
    spec = parse_syncs({"syncs": [json.loads(spec_json)]})[0]
    con = duckdb.connect(db)
    plan_sql.PLAN_CHUNK_ROWS = int(chunk_rows)  # small enough for several chunks
    wrapped: Any = _KillAtCommit(con, int(kill_at)) if int(kill_at) else con
    result = run_sync(wrapped, spec, lock_dir=Path(lock_dir))
    con.close()
    print(json.dumps({"delivered": result.delivered, "resumed": result.resumed,
                      "planned": result.planned, "ok": result.ok}))


if __name__ == "__main__":
    main()
