"""Published snapshots: the models readers need, as Parquet files outside the warehouse file.

Why: DuckDB lets one process hold a database file, and dbt-duckdb holds the warehouse for a
whole `dbt build`; while it does, no other process can even open the file read-only. Sensors,
sync runs and the fast path must keep working during builds, so they never open the warehouse:
after a successful build, `publish` copies the models they read (customer_profiles and every
audience) into `published/` next to the warehouse, and readers use `relation(model)`.

Layout of `<warehouse dir>/published/`:

    manifest.json                       which file is current for each model (replaced atomically)
    models/<model>/<seq>.parquet        one immutable snapshot per publish that changed the model
    changes/<model>/<seq>.parquet       rows that differ from the previous snapshot (the change log)

Files are written under a temporary name and renamed (`os.replace`, atomic on POSIX), the
manifest last; a reader that read the old manifest still finds the old files, because the last
`KEEP_SNAPSHOTS` snapshots are kept. So a reader sees either the old or the new state, whole.

The change log is what makes sensor ticks cost what changed rather than what exists: publish
pays one comparison per build (it reads the previous snapshot anyway), and a sensor reads only
the change files after its cursor. A change row carries the member's full new row
(`_hw_change = 'upsert'`) or only its key (`'remove'`), so consumers can compute their own
per-sync hash from it without reading the snapshot. Every change row also carries the member's
previous row as a struct (`_hw_old`, NULL for a member new to the model): a sync in mirror or
append mode derives what it last delivered from it instead of reading its state (whose blocks
1% churn would all touch, activations/diff.py).

On Snowflake there is no file lock to work around: nothing is published and `relation`
returns the table itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from headwater.config import Settings
from headwater.warehouse import WarehouseBusyError, connect

MANIFEST_NAME = "manifest.json"
# Snapshots kept per model: the current one and enough older ones for a reader that read the
# previous manifest a moment ago (a sensor tick, a sync run starting) to finish reading.
KEEP_SNAPSHOTS = 3
# Change files kept per model; a cursor older than the oldest one cannot be answered from the
# log and the reader must fall back to a full comparison (sensors then simply request a run).
KEEP_CHANGES = 200
PROFILES_MODEL = "customer_profiles"
# identifier -> profile, for the fast path's lookups of fresh events (journeys/profiles.py). Many
# rows per profile_id, so it has no per-profile change log.
IDENTITY_MODEL = "identity_map"
ROW_HASH = "_hw_row_hash"
CHANGE = "_hw_change"
SEQ = "_hw_seq"
OLD = "_hw_old"
# Raw landing tables and the column that says when a row landed (freshness checks).
LANDING_COLUMNS: dict[str, str] = {
    "events": "received_at",
    "orders": "created_at",
    "crm_contacts": "updated_at",
    "consent": "recorded_at",
}
# Build metadata stamped identically on every row (the build's "now"): left out of the row hash,
# or every build would report every member as changed and the change log would be the table.
UNHASHED_COLUMNS = frozenset({"computed_as_of"})
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ChangeFile:
    """Rows of one model that changed at publish `seq`."""

    seq: int
    path: str  # relative to the published folder
    upserts: int
    removes: int
    # True when each row carries the member's previous row (OLD); files written before it
    # existed do not, and readers that need it fall back to what they did before.
    old_rows: bool = False


@dataclass(frozen=True)
class ModelSnapshot:
    """The current snapshot of one model."""

    seq: int  # the publish that last changed it
    path: str  # relative to the published folder
    rows: int
    # Order-independent digest of every row: equal hashes, equal tables.
    content_hash: str
    # Oldest first; empty for models without a profile_id key (no change log).
    changes: list[ChangeFile] = field(default_factory=list)
    # The change log answers "what changed after seq c" for every c >= log_from_seq: it starts
    # at the model's first snapshot and moves forward when old change files are pruned.
    log_from_seq: int = 0


@dataclass(frozen=True)
class Manifest:
    """What `published/` holds, as of one publish."""

    seq: int
    build_id: str
    published_at: float
    models: dict[str, ModelSnapshot]
    # raw table -> latest landing time (ISO, UTC) seen at publish; None when the table is empty.
    landing: dict[str, str | None] = field(default_factory=dict)
    # Names this folder's history: made by its first publish and carried by every later one, so
    # a cursor kept elsewhere (a sync's, activations/diff.py) can tell a folder that was wiped
    # and published again from seq 1 apart from the one it was read from. Empty: published
    # before lineages existed (no cursor trusts it).
    lineage: str = ""

    def changes_after(self, model: str, cursor_seq: int) -> list[ChangeFile] | None:
        """Change files with seq > cursor_seq, or None when the log cannot answer.

        None means: the model is not published, or the cursor predates what the log covers
        (before the model's first snapshot, or older files were pruned). Callers then fall back
        to a full comparison.
        """
        snap = self.models.get(model)
        if snap is None or cursor_seq < snap.log_from_seq:
            return None
        return [c for c in snap.changes if c.seq > cursor_seq]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        data = json.loads(text)
        models = {
            name: ModelSnapshot(
                **{
                    **snap,
                    "changes": [ChangeFile(**c) for c in snap.get("changes", [])],
                }
            )
            for name, snap in data["models"].items()
        }
        return cls(
            seq=data["seq"],
            build_id=data["build_id"],
            published_at=data["published_at"],
            models=models,
            landing=data.get("landing", {}),
            lineage=data.get("lineage", ""),
        )


class SnapshotError(RuntimeError):
    """Nothing is published yet, or a published file is missing."""


def published_dir(settings: Settings) -> Path:
    """`published/` next to the warehouse file (HEADWATER_PUBLISHED_DIR overrides it)."""
    override = os.environ.get("HEADWATER_PUBLISHED_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return settings.duckdb_path.parent / "published"


def read_manifest(folder: Path) -> Manifest | None:
    """The current manifest, or None when nothing was published yet. Takes no lock."""
    try:
        return Manifest.from_json((folder / MANIFEST_NAME).read_text())
    except FileNotFoundError:
        return None


def relation(
    model: str,
    settings: Settings,
    manifest: Manifest | None = None,
    folder: Path | None = None,
) -> str:
    """SQL for a FROM clause that reads `model` without touching the warehouse file.

    DuckDB target: a subquery over the model's current Parquet snapshot (the row hash column
    that publish adds is left out). Snowflake: the table itself.
    """
    _check_ident(model)
    if settings.target != "duckdb":
        return model
    folder = folder or published_dir(settings)
    manifest = manifest or read_manifest(folder)
    if manifest is None or model not in manifest.models:
        raise SnapshotError(
            f"No published snapshot of {model!r} in {folder}. Run `headwater build` "
            "(it publishes after a successful build) or materialize the dbt assets in Dagster."
        )
    path = folder / manifest.models[model].path
    return f"(select * exclude ({ROW_HASH}) from read_parquet({_lit(path)}))"


def state_path(settings: Settings) -> Path:
    """The sync state database (HEADWATER_STATE_PATH; default next to the warehouse).

    Its own DuckDB file, not a schema of the warehouse: sync runs write it while dbt holds the
    warehouse. It is ATTACHed as `headwater_state`, so the engine's SQL is unchanged.
    """
    override = os.environ.get("HEADWATER_STATE_PATH")
    if override:
        return Path(override).expanduser().resolve()
    return settings.duckdb_path.parent / "headwater_state.duckdb"


@contextlib.contextmanager
def reader_connection(
    settings: Settings,
    *,
    state: Path | None = None,
    folder: Path | None = None,
    manifest: Manifest | None = None,
    state_read_only: bool = False,
    state_wait_seconds: float = 0.0,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, Manifest]]:
    """An in-memory DuckDB where every published model is a view over its snapshot and the
    sync state file is attached as `headwater_state`: what sync runs and sensors use.

    `settings.sync_memory_limit` bounds its memory when set: without a limit DuckDB keeps every
    table block it reads or writes cached up to 80% of RAM, so a sync's memory follows the
    audience and the diff; under one DuckDB evicts cached blocks and spills large joins to
    `<state file>.tmp`.

    The state file has a writer lock of its own: sync runs hold it while they run. Sensors
    open it read-only without waiting and treat WarehouseBusyError as "ask again next tick";
    sync runs wait (`state_wait_seconds`), which serializes runs of different syncs.
    """
    folder = folder or published_dir(settings)
    state = state or state_path(settings)
    manifest = manifest or read_manifest(folder)
    if manifest is None:
        raise SnapshotError(
            f"Nothing is published in {folder} yet: build first "
            "(`headwater build`, or materialize the dbt assets in Dagster)."
        )
    con = duckdb.connect(":memory:")
    try:
        if settings.sync_memory_limit:
            con.execute(f"set memory_limit = {_lit(settings.sync_memory_limit)}")
        con.execute(f"set temp_directory = {_lit(state.with_name(state.name + '.tmp'))}")
        for model in sorted(manifest.models):
            con.execute(
                f"create or replace view main.{model} as select * from "
                f"{relation(model, settings, manifest, folder)}"
            )
        _attach_state(con, state, state_read_only, state_wait_seconds)
        yield con, manifest
    finally:
        con.close()


def _attach_state(
    con: duckdb.DuckDBPyConnection, path: Path, read_only: bool, wait_seconds: float
) -> None:
    if read_only and not path.exists():
        # Nothing was ever delivered: an empty state schema reads the same as an empty file.
        con.execute("create schema headwater_state")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    delay = 0.05
    mode = " (read_only)" if read_only else ""
    while True:
        try:
            con.execute(f"attach {_lit(path)} as headwater_state{mode}")
            return
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"The sync state {path} is held by another process ({exc}); a sync run "
                    "is probably in progress."
                ) from exc
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def change_relation(files: Sequence[ChangeFile], folder: Path) -> str:
    """SQL over the given change files: the model's columns plus _hw_change, _hw_seq and
    (where the files have it: ChangeFile.old_rows) _hw_old."""
    if not files:
        raise ValueError("no change files")
    paths = ", ".join(_lit(folder / f.path) for f in files)
    # union_by_name: a model that gained a column between builds still reads as one table.
    return f"(select * from read_parquet([{paths}], union_by_name = true))"


def default_models(con: duckdb.DuckDBPyConnection, extra: Sequence[str] = ()) -> list[str]:
    """customer_profiles, identity_map, every `audience_*` table, every `measurement_*` table
    (small aggregates `headwater report` and Dagster's checks read), and `extra` (audiences
    named by syncs)."""
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = 'main' "
        "and (table_name in (?, ?) or table_name like 'audience\\_%' escape '\\'"
        " or table_name like 'measurement\\_%' escape '\\')",
        [PROFILES_MODEL, IDENTITY_MODEL],
    ).fetchall()
    names = {str(r[0]) for r in rows} | set(extra)
    return sorted(names)


def publish(
    settings: Settings,
    models: Sequence[str] | None = None,
    *,
    con: duckdb.DuckDBPyConnection | None = None,
    build_id: str | None = None,
    wait_seconds: float = 60.0,
) -> Manifest:
    """Snapshot `models` (default: `default_models`) from the warehouse into `published/`.

    Call it right after dbt succeeds, from the process that ran dbt: the warehouse is then free
    (or held by this process, in which case pass its connection as `con`).
    """
    folder = published_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    if settings.target != "duckdb":
        return Manifest(0, build_id or "", time.time(), {})
    with _publish_lock(folder), _warehouse(settings, con, wait_seconds) as wh:
        previous = read_manifest(folder)
        seq = (previous.seq if previous else 0) + 1
        names = list(models) if models is not None else default_models(wh)
        snapshots: dict[str, ModelSnapshot] = {}
        for name in names:
            _check_ident(name)
            old = previous.models.get(name) if previous else None
            snapshots[name] = _publish_model(wh, folder, name, seq, old)
        if previous:  # models not republished this time stay as they were
            for name, snap in previous.models.items():
                snapshots.setdefault(name, snap)
        manifest = Manifest(
            seq=seq,
            build_id=build_id or uuid.uuid4().hex,
            published_at=time.time(),
            models=snapshots,
            landing=landing_watermarks(wh),
            lineage=previous.lineage if previous and previous.lineage else uuid.uuid4().hex,
        )
        _atomic_write_text(folder / MANIFEST_NAME, manifest.to_json())
        _prune(folder, manifest)
        return manifest


def landing_watermarks(con: duckdb.DuckDBPyConnection) -> dict[str, str | None]:
    """raw table -> max landing time (ISO), for the tables that exist."""
    have = {
        str(r[0])
        for r in con.execute(
            "select table_name from information_schema.tables where table_schema = 'raw'"
        ).fetchall()
    }
    out: dict[str, str | None] = {}
    for table, column in LANDING_COLUMNS.items():
        if table in have:
            value = con.execute(f"select max({column}) from raw.{table}").fetchone()
            out[table] = value[0].isoformat() if value and value[0] is not None else None
    return out


def _publish_model(
    con: duckdb.DuckDBPyConnection, folder: Path, name: str, seq: int, old: ModelSnapshot | None
) -> ModelSnapshot:
    columns = [str(r[0]) for r in con.execute(f"describe main.{name}").fetchall()]
    hashed = [c for c in columns if c not in UNHASHED_COLUMNS]
    row_json = "to_json(struct_pack(" + ", ".join(f"{_q(c)} := t.{_q(c)}" for c in hashed) + "))"
    new_path = f"models/{name}/{seq:012d}.parquet"
    target = folder / new_path
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    con.execute(
        f"copy (select t.*, md5(cast({row_json} as varchar)) as {ROW_HASH} from main.{name} t) "
        f"to {_lit(tmp)} (format parquet, compression zstd)"
    )
    rows, content_hash = con.execute(
        f"select count(*), coalesce(md5(string_agg({ROW_HASH}, '' order by {ROW_HASH})), '') "
        f"from read_parquet({_lit(tmp)})"
    ).fetchone() or (0, "")
    if old is not None and old.content_hash == content_hash:
        tmp.unlink()  # unchanged: keep the old snapshot, write no change file
        return old
    os.replace(tmp, target)
    changes = list(old.changes) if old else []
    log_from_seq = old.log_from_seq if old else seq
    if "profile_id" not in columns or name == IDENTITY_MODEL:
        log_from_seq = seq  # no key, no change log: only "changed since the latest" is known
    elif old is not None:
        change = _write_changes(con, folder, name, seq, folder / old.path, target)
        if change is not None:
            changes.append(change)
        if len(changes) > KEEP_CHANGES:
            pruned, changes = changes[:-KEEP_CHANGES], changes[-KEEP_CHANGES:]
            log_from_seq = max(log_from_seq, pruned[-1].seq)
    return ModelSnapshot(
        seq=seq,
        path=new_path,
        rows=int(rows),
        content_hash=str(content_hash),
        changes=changes,
        log_from_seq=log_from_seq,
    )


def _write_changes(
    con: duckdb.DuckDBPyConnection, folder: Path, name: str, seq: int, old: Path, new: Path
) -> ChangeFile | None:
    rel = f"changes/{name}/{seq:012d}.parquet"
    target = folder / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    old_columns = [str(r[0]) for r in con.execute(
        f"describe select * from read_parquet({_lit(old)})").fetchall() if r[0] != ROW_HASH]
    previous = "struct_pack(" + ", ".join(f"{_q(c)} := o.{_q(c)}" for c in old_columns) + ")"
    # Upserts carry the whole new row; removes only the key (other columns null); both the
    # previous row (OLD). The anti joins hold only keys and hashes; the previous rows of the
    # few changed members are fetched by a second, streaming pass over the old snapshot.
    con.execute(
        f"""copy (
            with upserts as (
                select n.* from read_parquet({_lit(new)}) n
                anti join read_parquet({_lit(old)}) o
                  on o.profile_id = n.profile_id and o.{ROW_HASH} = n.{ROW_HASH}
            ),
            removes as (
                select o.profile_id from read_parquet({_lit(old)}) o
                anti join read_parquet({_lit(new)}) n on n.profile_id = o.profile_id
            ),
            previous as (
                select o.profile_id, {previous} as {OLD} from read_parquet({_lit(old)}) o
                semi join (select profile_id from upserts union all select profile_id
                           from removes) k on k.profile_id = o.profile_id
            )
            select u.*, 'upsert' as {CHANGE}, {seq}::bigint as {SEQ}, p.{OLD}
            from upserts u left join previous p on p.profile_id = u.profile_id
            union all by name
            select r.profile_id, 'remove' as {CHANGE}, {seq}::bigint as {SEQ}, p.{OLD}
            from removes r left join previous p on p.profile_id = r.profile_id
        ) to {_lit(tmp)} (format parquet, compression zstd)"""
    )
    upserts, removes = con.execute(
        f"select count(*) filter (where {CHANGE} = 'upsert'), "
        f"count(*) filter (where {CHANGE} = 'remove') from read_parquet({_lit(tmp)})"
    ).fetchone() or (0, 0)
    if not upserts and not removes:
        tmp.unlink()
        return None
    os.replace(tmp, target)
    return ChangeFile(seq=seq, path=rel, upserts=int(upserts), removes=int(removes),
                      old_rows=True)


def _prune(folder: Path, manifest: Manifest) -> None:
    """Delete snapshots and change files the manifest no longer needs (keep a few back)."""
    for name, snap in manifest.models.items():
        model_dir = folder / "models" / name
        if model_dir.is_dir():
            files = sorted(p for p in model_dir.glob("*.parquet"))
            keep = {folder / snap.path, *files[-KEEP_SNAPSHOTS:]}
            for p in files:
                if p not in keep:
                    p.unlink(missing_ok=True)
        change_dir = folder / "changes" / name
        if change_dir.is_dir():
            wanted = {folder / c.path for c in snap.changes}
            for p in change_dir.glob("*.parquet"):
                if p not in wanted:
                    p.unlink(missing_ok=True)


@contextlib.contextmanager
def _publish_lock(folder: Path) -> Iterator[None]:
    # Two publishers (a CLI build and a Dagster run) must not interleave their seq numbers.
    with open(folder / ".publish.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _warehouse(
    settings: Settings, con: duckdb.DuckDBPyConnection | None, wait_seconds: float
) -> Iterator[duckdb.DuckDBPyConnection]:
    if con is not None:
        yield con
        return
    try:
        own = connect(settings.duckdb_path, read_only=True, wait_seconds=wait_seconds)
    except duckdb.ConnectionException:
        # dbt ran in this process (`headwater build`) and dbt-duckdb keeps its read-write
        # database instance open; DuckDB only shares it with the same configuration.
        own = connect(settings.duckdb_path, read_only=False, wait_seconds=wait_seconds)
    try:
        yield own
    finally:
        own.close()


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    with open(tmp, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def _lit(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _q(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _check_ident(name: str) -> None:
    if not _IDENT.match(name):
        raise ValueError(f"model name {name!r} is not a plain identifier")


def describe(manifest: Manifest) -> dict[str, Any]:
    """A short summary for logs and Dagster metadata."""
    return {
        "seq": manifest.seq,
        "build_id": manifest.build_id,
        "models": {n: s.rows for n, s in sorted(manifest.models.items())},
    }
