"""Where the fast path reads new events: rows of raw.events past a received_at watermark.

Two sources, one contract (rows with raw.events' columns, received_at ascending):
- `LandingSource`: the collector's landing folder (collector/landing.py). The collector is the
  only writer and stamps one strictly increasing received_at per group commit, so "every row
  with received_at > watermark, in the files whose name says they may hold one" is exact.
  No lock is taken, so it works while dbt builds.
- `TableSource`: a `raw.events` your own loader lands in the warehouse, read over a connection
  the caller provides (tests, the demo's replay); for a DuckDB file held by dbt, the caller opens
  it read-only per step and skips a busy step.

Watermark semantics: the step stores the largest received_at it processed, in the same
transaction as its decisions; a crash before that commit re-reads the same rows (decisions are
idempotent per message), a crash after it never re-reads them.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collector import landing

COLUMNS = landing.EVENT_SCHEMA.names


class EventSource(Protocol):
    name: str

    def read(self, after: datetime | None, until: datetime | None) -> pa.Table:
        """Rows with after < received_at <= until (None: unbounded), received_at ascending."""
        ...


class LandingSource:
    name = "landing"

    def __init__(self, landing_dir: Path) -> None:
        self.landing_dir = landing_dir
        landing.ensure_layout(landing_dir)

    def read(self, after: datetime | None, until: datetime | None) -> pa.Table:
        mark = after or datetime(1970, 1, 1)
        tables = []
        for path in self._files_since(landing.to_ns(mark)):
            try:
                # ParquetFile.read: a third of read_table's cost on these one-group files
                # (0.44 ms against 1.25 ms measured), which the fast path pays per file.
                table = pq.ParquetFile(path).read(use_threads=False)
            except FileNotFoundError:
                continue  # compaction merged it away; the merged file is listed next time
            tables.append(table.select(COLUMNS).cast(landing.EVENT_SCHEMA))
        if not tables:
            return landing.EVENT_SCHEMA.empty_table()
        table = pa.concat_tables(tables)
        received = table.column("received_at")
        keep = pc.greater(received, pa.scalar(mark, pa.timestamp("us")))
        if until is not None:
            keep = pc.and_(keep, pc.less_equal(received, pa.scalar(until, pa.timestamp("us"))))
        table = table.filter(keep)
        return table.sort_by([("received_at", "ascending"), ("message_id", "ascending")])


    def _files_since(self, mark_ns: int) -> list[Path]:
        """`landing.files_since` on plain strings: this runs every few milliseconds over a
        folder of tens of thousands of names (compaction only merges files older than five
        minutes), so names are compared in C rather than parsed one by one. A collector file is
        named `<first ns>-<last ns>.parquet` with first = last (one stamp per group commit), so
        "last > mark" is "name > mark's 20 digits"; only compacted files span a range and are
        parsed. No shortcut on the folder's mtime: it has the kernel's coarse clock (a few ms),
        so a rename in the same tick as the last listing would go unseen."""
        folder = self.landing_dir / landing.EVENTS
        threshold = f"{mark_ns:020d}-{mark_ns:020d}.parquet"
        names = [n for n in os.listdir(folder) if n > threshold and n[0] != "."
                 or "compacted" in n and n[0] != "." and int(n[21:41]) > mark_ns]
        names.sort()
        return [folder / n for n in names if n.endswith(".parquet")]


class TableSource:
    """raw.events (or any relation with its columns) over a caller-owned connection."""

    name = "raw_events"

    def __init__(self, con: duckdb.DuckDBPyConnection, relation: str = "raw.events") -> None:
        self.con = con
        self.relation = relation

    def read(self, after: datetime | None, until: datetime | None) -> pa.Table:
        cols = ", ".join(
            f'cast("{c}" as varchar) as "{c}"' if c in ("traits", "properties", "context")
            else f'"{c}"' for c in COLUMNS
        )
        return self.con.execute(
            f"select {cols} from {self.relation} "
            "where (cast(? as timestamp) is null or received_at > ?) "
            "and (cast(? as timestamp) is null or received_at <= ?) "
            "order by received_at, message_id",
            [after, after, until, until],
        ).to_arrow_table()
