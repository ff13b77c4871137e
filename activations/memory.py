"""DuckDB's memory budget on a sync connection: read it, lower it for a while, let go of what
DuckDB holds between two units of work.

A sync connection runs under `HEADWATER_SYNC_MEMORY_LIMIT` (headwater/snapshots.py). DuckDB
keeps every block a query read or a commit wrote cached up to that limit, so what a sync holds
follows what it touched unless a phase lowers the limit (its working set is then spilled to
the connection's temp directory) or lets the cache go. Rows committed through the WAL are held
in memory too, until a checkpoint writes them to the file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

import duckdb

# What release_memory lowers DuckDB's memory limit to for a moment.
RELEASE_FLOOR = "1MB"
# release_memory checkpoints a database whose WAL holds this share of DuckDB's
# checkpoint_threshold. DuckDB checkpoints by itself once a commit takes the WAL past the
# threshold, in the middle of a unit of work: on top of what the unit holds (a drain page's
# rows and answers, a plan part's temp tables), a checkpoint's own ~10 MB (the row groups it
# rewrites and compresses) set the peak of an incremental sync of 1% churn at 10M members
# (211 MB, against 187 MB at 1M, whose churn never fills the WAL). Between units nothing else
# is held, and a unit adds less than half the threshold to the WAL (a drain page of 5k intents
# about 1 MB, a plan part of 25k candidates about 5 MB), so DuckDB's own checkpoint is left
# as the backstop for units larger than that (a first sync's pages).
CHECKPOINT_SHARE = 0.5

_UNITS = {
    "": 1, "b": 1, "byte": 1, "bytes": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def _parse(size: str) -> tuple[float, int]:
    match = _SIZE.match(size)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(
            f"{size!r} is not a memory size: write a number and a unit, e.g. '256MB' or '1GiB'"
        )
    return float(match.group(1)), _UNITS[unit]


def size_bytes(size: str) -> int:
    """Bytes in a DuckDB size: what `set memory_limit` takes ('256MB') or reads back
    ('244.1 MiB')."""
    number, unit = _parse(size)
    return round(number * unit)


def _set_limit(con: duckdb.DuckDBPyConnection, size: str) -> None:
    """Set the limit back to `size`, a value DuckDB read back. DuckDB reads a limit back
    truncated to 0.1 of its binary unit ('244.1 MiB' for 256MB), and setting that text again
    would truncate it once more (244.0 MiB): it is set to the middle of the step it stands
    for, which reads back the same."""
    number, unit = _parse(size)
    step = unit // 20 if unit in (2**10, 2**20, 2**30, 2**40) else 0
    con.execute(f"set memory_limit = '{round(number * unit) + step}B'")


def setting(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The current value of one of the connection's settings, as text."""
    row = con.execute("select current_setting(?)", [name]).fetchone()
    return str(row[0]) if row and row[0] is not None else None


@contextmanager
def lowered_limit(con: duckdb.DuckDBPyConnection, limit: str) -> Iterator[None]:
    """Run the block under `limit`, or under the connection's own limit when that is lower;
    the limit is set back afterwards, whatever happens."""
    current = setting(con, "memory_limit")
    if current and size_bytes(current) <= size_bytes(limit):
        yield
        return
    con.execute(f"set memory_limit = '{limit}'")
    try:
        yield
    finally:
        if current:
            _set_limit(con, current)
        else:
            con.execute("reset memory_limit")


def release_memory(con: duckdb.DuckDBPyConnection, limit: str | None) -> None:
    """Between two units of a sync's work: let go of the table blocks DuckDB keeps cached, by
    lowering its memory limit for a moment (it evicts what is not pinned) and setting it back
    to `limit`, and checkpoint a database whose WAL is past CHECKPOINT_SHARE of its threshold
    (what the checkpoint wrote is evicted too).

    Evicting a clean block costs nothing, and the next query reads only its own blocks again.
    """
    if not limit:
        return
    _evict(con, limit)
    if _checkpoint_large_wals(con):
        _evict(con, limit)


def _evict(con: duckdb.DuckDBPyConnection, limit: str) -> None:
    try:
        con.execute(f"set memory_limit = '{RELEASE_FLOOR}'")
    except duckdb.Error:
        pass  # more than the floor is pinned: what could be evicted was
    finally:
        _set_limit(con, limit)


def _checkpoint_large_wals(con: duckdb.DuckDBPyConnection) -> bool:
    """Checkpoint each database whose WAL is past CHECKPOINT_SHARE of checkpoint_threshold;
    whether any was."""
    threshold = size_bytes(setting(con, "checkpoint_threshold") or "16MiB")
    due = [name for name, wal in con.execute(
        "select database_name, wal_size from pragma_database_size()").fetchall()
        if wal and size_bytes(str(wal)) >= CHECKPOINT_SHARE * threshold]
    for name in due:
        con.execute(f'checkpoint "{name}"')
    return bool(due)
