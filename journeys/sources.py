"""Where the fast path reads new events: rows of raw.events past a received_at watermark.

Two sources, one contract (rows with raw.events' columns, received_at ascending):
- `LandingSource`: the collector's landing folder (collector/landing.py). The collector is the
  only writer and stamps one strictly increasing received_at per group commit, so "every row
  with received_at > watermark, in the files whose name says they may hold one" is exact.
  No lock is taken, so it works while dbt builds.
- `TableSource`: a `raw.events` your own loader lands in the warehouse, read over a connection
  the caller provides (tests, the demo's replay); for a DuckDB file held by dbt, the caller opens
  it read-only per step and skips a busy step.

Watermark semantics: the step stores the largest received_at it processed (and the landing
source's list of files read within its lookback window), in the same transaction as its
decisions; a crash before that commit re-reads the same rows, a crash after it never re-reads
them.
"""

from __future__ import annotations

import math
import os
import select
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from collector import landing
from collector.handoff import HandoffClient
from journeys.watch import DirectoryWatch

COLUMNS = landing.EVENT_SCHEMA.names
# With a directory watch, the folder is still listed this often (a safety net: the kernel may
# drop watch events).
RELIST_SECONDS = 1.0
# How long a file fresh from the collector waits for its rows over the handoff before it is read
# from the folder (LandingSource._files_since).
HANDOFF_GRACE_NS = 200_000_000


class EventSource(Protocol):
    name: str

    def read(self, after: datetime | None, until: datetime | None) -> pa.Table:
        """New rows: received_at > after (and <= until), received_at ascending."""
        ...

    def checkpoint(self) -> tuple[list[str], str | None]:
        """What the source must remember beside the watermark, stored in the same commit: the
        names it read since the last call, and a floor below which remembered names may be
        forgotten (None: nothing to forget)."""
        ...

    def restore(self, names: Iterable[str]) -> None:
        """The names remembered by the last commit (a restart, or a rolled-back commit)."""
        ...

    def wait(self, timeout: float, wake_fds: Sequence[int] = ()) -> None:
        """Idle until new events may be there or a `wake_fds` descriptor is readable, at most
        `timeout` seconds."""
        ...

    def signals(self) -> bool:
        """Whether `wait` returns as soon as events land. If not, the caller waits no longer
        than its polling interval."""
        ...

    def close(self) -> None: ...


# From this many files on, one DuckDB query reads them faster than pyarrow file by file; below,
# DuckDB's per-query cost loses (CPU per read measured here, 2-row files: 1 file 0.5 vs
# 1.2 ms, 5 files 2.1 vs 2.5 ms, 10 files 4.5 vs 3.5 ms, 40 files 20 vs 12 ms).
BATCH_READ_FILES = 8
# How often the names read within the lookback window are pruned (see _prune_seen).
PRUNE_SECONDS = 0.1
_EMPTY = landing.EVENT_SCHEMA.empty_table()


def wait_readable(fds: Sequence[int], timeout: float) -> None:
    """Block until one of `fds` is readable or `timeout` seconds pass (a plain sleep if none)."""
    if not fds:
        time.sleep(timeout)
        return
    poller = select.poll()
    for fd in fds:
        poller.register(fd, select.POLLIN)
    poller.poll(max(0, math.ceil(timeout * 1000)))


def _stamped_once(table: pa.Table) -> bool:
    """Every row has the same received_at (a collector file is one group commit's stamp)."""
    if table.num_rows <= 1:
        return True
    bounds = pc.min_max(table.column("received_at"))
    return bool(bounds["min"] == bounds["max"])


class LandingSource:
    """The collector's landing folder.

    Why a lookback window: a directory listing is not atomic with respect to renames into the
    folder (readdir walks a hash order; an entry renamed in behind its cursor is missed while
    a later one ahead of it is returned), so "the file with the largest stamp has been read"
    does not mean every earlier file was. Measured here: 3 events in 10,000 at 500/s were
    lost that way. So each read lists files stamped within `window` before the watermark
    too and skips the ones already read, which the source remembers (and the step stores
    with the watermark: `checkpoint` / `restore`), so a late-seen file is read exactly once.
    """

    name = "landing"

    def __init__(self, landing_dir: Path, window_seconds: float = 2.0, *,
                 handoff: bool = False) -> None:
        self.landing_dir = landing_dir
        self.window_ns = int(window_seconds * 1e9)
        # Only the folder, so that the watch has something to watch before the collector's
        # first start: its files, the schema file too, are the collector's to write (and the
        # collector deletes stray temporaries when it starts).
        (landing_dir / landing.EVENTS).mkdir(parents=True, exist_ok=True)
        self._seen: dict[str, int] = {}  # file name -> its last ns, within the window
        # Names read and the pruning floor since the last checkpoint: a commit stores only
        # these (a window of names rewritten on every commit was ~0.2 ms of JSON and 8
        # overflow pages at 500 events/s).
        self._added: list[str] = []
        self._floor: str | None = None
        self._pruned_at = 0.0  # monotonic time _seen was last pruned
        # One thread: these reads are a few small files, and DuckDB's worker threads only add
        # hand-offs on a machine whose cores the collector and dbt are using.
        self._con = duckdb.connect(config={"threads": 1})
        self._watch = DirectoryWatch.open(landing_dir / landing.EVENTS)
        self._listed_at = 0.0  # monotonic time of the last full listing
        self._pending: set[str] = set()  # names the watch reported, not yet read
        # The collector's handoff (collector/handoff.py): rows of files as they land, so that
        # they need not be read back. The long-lived worker subscribes; a step driven by a
        # sensor tick reads the folder (a subscription would only start with its tick).
        self._handoff = HandoffClient(landing_dir) if handoff else None
        self.files_handed = 0  # files whose rows came over the handoff
        self.files_read = 0  # files read from the folder

    def signals(self) -> bool:
        # Names the watch reported that wait for their rows over the handoff are read from
        # the folder after HANDOFF_GRACE_NS, which no descriptor signals.
        return self._watch is not None and not self._pending

    def wait(self, timeout: float, wake_fds: Sequence[int] = ()) -> None:
        """Idle until a file lands (inotify), its rows are handed over, a `wake_fds`
        descriptor is readable, or `timeout` passes."""
        fds = [*wake_fds] if self._watch is None else [self._watch.fd, *wake_fds]
        if self._handoff is not None:
            # Subscribing while idle too, so that the first rows wake this wait.
            self._handoff.connect(time.monotonic())
            fd = self._handoff.fileno()
            if fd is not None:
                fds.append(fd)
        wait_readable(fds, timeout)

    def close(self) -> None:
        if self._handoff is not None:
            self._handoff.close()
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self._con.close()

    def checkpoint(self) -> tuple[list[str], str | None]:
        added, floor = self._added, self._floor
        self._added, self._floor = [], None
        return added, floor

    def restore(self, names: Iterable[str]) -> None:
        self._seen = {n: int(n[21:41]) for n in names}
        self._added, self._floor = [], None

    def read(self, after: datetime | None, until: datetime | None) -> pa.Table:
        if until is not None:
            raise ValueError("the landing source runs on the wall clock (the collector stamps "
                             "received_at); use TableSource with an injected clock")
        mark_ns = landing.to_ns(after) if after else 0
        tables: list[pa.Table] = []
        if self._handoff is not None:
            self._take_handed(self._handoff, mark_ns, tables)
        paths = self._files_since(mark_ns - self.window_ns)
        self.files_read += len(paths)
        if len(paths) >= BATCH_READ_FILES:
            try:
                table: pa.Table = self._con.sql(
                    "select * exclude (filename), filename from read_parquet($1, filename = true)",
                    params=[[str(p) for p in paths]],
                ).to_arrow_table()
            except duckdb.IOException:
                self._read_each(paths, after, tables)  # a file vanished (compaction)
            else:
                self._seen.update((p.name, int(p.name[21:41])) for p in paths)
                self._added += (p.name for p in paths)
                compacted = pc.match_substring(table.column("filename"), "-compacted")
                if after is not None:
                    old = pc.and_(compacted, pc.less_equal(
                        table.column("received_at"), pa.scalar(after, pa.timestamp("us"))))
                    table = table.filter(pc.invert(old))
                tables.append(table.select(COLUMNS).cast(landing.EVENT_SCHEMA))
        else:
            self._read_each(paths, after, tables)
        self._prune_seen(mark_ns)
        if not tables:
            return _EMPTY
        if len(tables) == 1 and _stamped_once(tables[0]):
            return tables[0]  # one group commit: a single received_at, nothing to order
        table = pa.concat_tables(tables)
        return table.sort_by([("received_at", "ascending"), ("message_id", "ascending")])

    def _prune_seen(self, mark_ns: int) -> None:
        """Forget names that fell out of the lookback window. Rebuilding the dict costs its
        size (a window's worth of files), so it is done at most every PRUNE_SECONDS, not on
        every read; names kept a little longer only cost a larger checkpoint."""
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_SECONDS or not self._seen:
            return
        self._pruned_at = now
        newest = max(mark_ns, max(self._seen.values()))
        self._seen = {n: ns for n, ns in self._seen.items() if ns > newest - self.window_ns}
        # Stored names compare by their first ns: a compacted name that starts below the
        # floor only holds rows far older than the watermark, which a read filters out.
        self._floor = f"{newest - self.window_ns:020d}"

    def _take_handed(self, handoff: HandoffClient, mark_ns: int,
                     tables: list[pa.Table]) -> None:
        """Rows the collector handed over: files it wrote since we subscribed, never
        compacted ones. Taken before the folder is listed, so that their names are known as
        read and the listing skips them. A subscription made or lost means files may have
        landed unseen: the folder is listed in full on this read."""
        handoff.connect(time.monotonic())
        frames, changed = handoff.drain()
        if changed:
            self._listed_at = 0.0
        for name, table in frames:
            last_ns = int(name[21:41])
            if name in self._seen or last_ns <= mark_ns - self.window_ns:
                continue  # read from the folder already (it won the race), or long done
            self._seen[name] = last_ns
            self._added.append(name)
            self.files_handed += 1
            # The collector's own table: already raw.events' columns (a cast costs 30 us).
            same = table.schema.equals(landing.EVENT_SCHEMA)
            tables.append(table if same else table.select(COLUMNS).cast(landing.EVENT_SCHEMA))

    def _read_each(self, paths: list[Path], after: datetime | None,
                   tables: list[pa.Table]) -> None:
        for path in paths:
            try:
                # ParquetFile.read: a third of read_table's cost on these one-group files
                # (0.44 ms against 1.25 ms measured), which the fast path pays per file.
                table = pq.ParquetFile(path).read(use_threads=False)
            except FileNotFoundError:
                continue  # compaction merged it away; the merged file is listed next time
            table = table.select(COLUMNS).cast(landing.EVENT_SCHEMA)
            if "compacted" in path.name and after is not None:
                # Merged old files: only what is past the watermark is new.
                keep = pc.greater(table.column("received_at"),
                                  pa.scalar(after, pa.timestamp("us")))
                table = table.filter(keep)
            self._seen[path.name] = int(path.name[21:41])
            self._added.append(path.name)
            tables.append(table)

    def _files_since(self, mark_ns: int) -> list[Path]:
        """`landing.files_since` on plain strings: this runs every few milliseconds over a
        folder of tens of thousands of names (compaction only merges files older than five
        minutes), so names are compared in C rather than parsed one by one. A collector file is
        named `<first ns>-<last ns>.parquet` with first = last (one stamp per group commit), so
        "last > mark" is "name > mark's 20 digits"; only compacted files span a range and are
        parsed. No shortcut on the folder's mtime: it has the kernel's coarse clock (a few ms),
        so a rename in the same tick as the last listing would go unseen."""
        folder = self.landing_dir / landing.EVENTS
        mark_ns = max(mark_ns, 0)
        threshold = f"{mark_ns:020d}-{mark_ns:020d}.parquet"
        candidates: Iterable[str]
        if self._watch is not None:
            reported, overflow = self._watch.drain()
            self._pending.update(reported)
            if overflow or time.monotonic() - self._listed_at > RELIST_SECONDS:
                candidates, self._listed_at = os.listdir(folder), time.monotonic()
            else:
                candidates = self._pending
        else:
            candidates = os.listdir(folder)
        names = [n for n in candidates if n > threshold and n[0] != "."
                 or "compacted" in n and n[0] != "." and int(n[21:41]) > mark_ns]
        self._pending.clear()
        seen = self._seen
        names = sorted(n for n in names if n not in seen and n.endswith(".parquet"))
        if self._handoff is not None and self._handoff.connected:
            # The collector renames a file, fsyncs the folder, then hands its rows over: the
            # watch reports the name a millisecond before they arrive. Reading the file then
            # would do the work the handoff saves, so a name this fresh waits for its rows;
            # if they do not come (the subscription was lost: the folder is listed in full
            # then), it is read from the folder. Well inside the lookback window.
            # Files stamped before the subscription began may never come over it.
            since = max(time.time_ns() - HANDOFF_GRACE_NS, self._handoff.subscribed_ns)
            fresh = f"{since:020d}"
            waiting = {n for n in names if n > fresh and "compacted" not in n}
            self._pending.update(waiting)
            names = [n for n in names if n not in waiting]
        return [folder / n for n in names]


class TableSource:
    """raw.events (or any relation with its columns) over a caller-owned connection."""

    name = "raw_events"

    def __init__(self, con: duckdb.DuckDBPyConnection, relation: str = "raw.events") -> None:
        self.con = con
        self.relation = relation

    def checkpoint(self) -> tuple[list[str], str | None]:
        return [], None  # the watermark says it all: rows are read by one query

    def signals(self) -> bool:
        return False

    def wait(self, timeout: float, wake_fds: Sequence[int] = ()) -> None:
        wait_readable(wake_fds, timeout)

    def restore(self, names: Iterable[str]) -> None:
        pass

    def close(self) -> None:
        pass  # the connection is the caller's

    def read(self, after: datetime | None, until: datetime | None) -> pa.Table:
        cols = ", ".join(
            f'cast("{c}" as varchar) as "{c}"' if c in ("traits", "properties", "context")
            else f'"{c}"' for c in COLUMNS
        )
        table: pa.Table = self.con.sql(
            f"select {cols} from {self.relation} "
            "where (cast($1 as timestamp) is null or received_at > $1) "
            "and (cast($2 as timestamp) is null or received_at <= $2) "
            "order by received_at, message_id",
            params=[after, until],
        ).to_arrow_table()
        return table
