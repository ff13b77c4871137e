"""Run one sync in a child process (the crash-safety test SIGKILLs it at random points)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import duckdb

from activations.config import parse_syncs
from activations.engine import run_sync


def main() -> None:
    db, lock_dir, spec_json = sys.argv[1], sys.argv[2], sys.argv[3]
    spec = parse_syncs({"syncs": [json.loads(spec_json)]})[0]
    con = duckdb.connect(db)
    result = run_sync(con, spec, lock_dir=Path(lock_dir), ack_flush_rows=40)
    con.close()
    print(json.dumps({"delivered": result.delivered, "ok": result.ok}))


if __name__ == "__main__":
    main()
