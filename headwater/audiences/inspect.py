"""Read built audiences from the DuckDB warehouse, read-only: sizes and sample members."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb

from headwater.warehouse import connect

# Columns shown in a preview when the audience has them, in this order; syncs map these most.
PREVIEW_COLUMNS: tuple[str, ...] = (
    "profile_id",
    "email",
    "phone",
    "first_name",
    "last_name",
    "loyalty_tier",
    "email_consent",
    "sms_consent",
    "ads_consent",
)
SCHEMA = "main"  # the dbt target schema on DuckDB (profiles.yml)


class WarehouseNotBuiltError(RuntimeError):
    """The warehouse file or the audience table does not exist yet."""


@dataclass(frozen=True)
class Preview:
    """One audience's size and first members (ordered by profile_id, so stable)."""

    name: str
    size: int
    columns: list[str]
    rows: list[tuple[object, ...]]


def _open(path: Path, wait_seconds: float) -> duckdb.DuckDBPyConnection:
    if not path.exists():
        raise WarehouseNotBuiltError(
            f"No warehouse at {path}. Run `headwater build` (or `headwater demo`) first, or point "
            "HEADWATER_DUCKDB_PATH at your warehouse file."
        )
    return connect(path, read_only=True, wait_seconds=wait_seconds)


def _built_tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute(
        "select table_name from information_schema.tables where table_schema = ?", [SCHEMA]
    ).fetchall()
    return {r[0] for r in rows}


def member_counts(
    path: Path, names: list[str], *, wait_seconds: float = 5.0
) -> dict[str, int | None]:
    """Rows per audience model; None for an audience not built yet."""
    con = _open(path, wait_seconds)
    try:
        built = _built_tables(con)
        counts: dict[str, int | None] = {}
        for name in names:
            if name in built:
                row = con.execute(f'select count(*) from {SCHEMA}."{name}"').fetchone()
                counts[name] = int(row[0]) if row else 0
            else:
                counts[name] = None
        return counts
    finally:
        con.close()


def preview(path: Path, name: str, *, limit: int = 10, wait_seconds: float = 5.0) -> Preview:
    """Size and the first `limit` members of one built audience, with a few profile fields."""
    con = _open(path, wait_seconds)
    try:
        if name not in _built_tables(con):
            raise WarehouseNotBuiltError(
                f"Audience {name!r} is not built in {path}. Run `headwater build` "
                f"(or `headwater build --select +{name}`)."
            )
        table = f'{SCHEMA}."{name}"'
        available = [r[0] for r in con.execute(f"describe {table}").fetchall()]
        columns = [c for c in PREVIEW_COLUMNS if c in available] or available[:6]
        size_row = con.execute(f"select count(*) from {table}").fetchone()
        select = ", ".join(f'"{c}"' for c in columns)
        rows = con.execute(
            f"select {select} from {table} order by profile_id limit ?", [limit]
        ).fetchall()
        return Preview(
            name=name,
            size=int(size_row[0]) if size_row else 0,
            columns=columns,
            rows=[tuple(r) for r in rows],
        )
    finally:
        con.close()
