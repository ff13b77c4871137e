"""The sync connection's memory budget (activations/memory.py), on a real DuckDB."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from activations import memory


@pytest.mark.parametrize(("size", "expected"), [
    pytest.param("256MB", 256 * 10**6, id="set: decimal megabytes"),
    pytest.param("244.1 MiB", 255957402, id="read back: binary, one decimal"),
    pytest.param("1GiB", 2**30, id="gibibytes"),
    pytest.param("0 bytes", 0, id="bytes"),
    pytest.param("512", 512, id="no unit: bytes"),
])
def test_sizes_as_duckdb_writes_and_reads_them(size: str, expected: int) -> None:
    assert memory.size_bytes(size) == expected


@pytest.mark.parametrize("size", ["", "lots", "12 parsecs", "-5MB"])
def test_a_size_that_is_not_one_says_how_to_write_it(size: str) -> None:
    with pytest.raises(ValueError, match="e.g. '256MB'"):
        memory.size_bytes(size)


def _limit(con: duckdb.DuckDBPyConnection) -> str:
    return str(memory.setting(con, "memory_limit"))


def test_a_lowered_limit_holds_inside_the_block_and_is_set_back_after_an_error() -> None:
    con = duckdb.connect()
    con.execute("set memory_limit = '256MB'")
    before = _limit(con)
    with pytest.raises(RuntimeError), memory.lowered_limit(con, "96MB"):
        assert _limit(con) == "91.5 MiB"
        raise RuntimeError("the compare failed")
    assert _limit(con) == before


def test_a_limit_already_lower_is_kept() -> None:
    con = duckdb.connect()
    con.execute("set memory_limit = '64MB'")
    with memory.lowered_limit(con, "96MB"):
        assert _limit(con) == "61.0 MiB"
    assert _limit(con) == "61.0 MiB"


def test_release_memory_evicts_cached_blocks_and_keeps_the_limit(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    con.execute("create table t as select md5(i::varchar) as k, i from range(2000000) r(i)")
    con.execute("checkpoint")
    con.execute("set memory_limit = '200MB'")
    limit = _limit(con)
    con.execute("select max(k), sum(i) from t").fetchall()

    def cached() -> float:
        (n,) = con.execute("select coalesce(sum(memory_usage_bytes), 0) from duckdb_memory() "
                           "where tag = 'BASE_TABLE'").fetchone() or (0,)
        return float(n) / 2**20

    before = cached()
    assert before > 20, before
    memory.release_memory(con, limit)
    assert cached() < before / 4, (before, cached())
    assert _limit(con) == limit
    for _ in range(3):  # set back exactly, however often
        memory.release_memory(con, limit)
    assert _limit(con) == limit
    con.close()


def _wal_bytes(con: duckdb.DuckDBPyConnection, database: str) -> int:
    (wal,) = con.execute("select wal_size from pragma_database_size() where database_name = ?",
                         [database]).fetchone() or ("0 bytes",)
    return memory.size_bytes(str(wal))


@pytest.mark.parametrize(("rows", "checkpointed"), [
    pytest.param(60_000, True, id="WAL past half the threshold: checkpointed"),
    pytest.param(2_000, False, id="small WAL: left to DuckDB"),
])
def test_release_memory_checkpoints_a_wal_past_half_its_threshold(
    tmp_path: Path, rows: int, checkpointed: bool,
) -> None:
    # The state attached under its own name, as a sync connection has it.
    con = duckdb.connect()
    con.execute(f"attach '{tmp_path / 'state.duckdb'}' as headwater_state")
    con.execute("set checkpoint_threshold = '4MB'")
    con.execute("create table headwater_state.t (k varchar, i bigint)")
    con.execute("checkpoint headwater_state")
    # Commits under a row group each go through the WAL (a larger one is written to the file).
    for start in range(0, rows, 20_000):
        con.execute("insert into headwater_state.t select md5(i::varchar), i "
                    f"from range({start}, {min(rows, start + 20_000)}) r(i)")
    wal = _wal_bytes(con, "headwater_state")
    assert 0 < wal < 4 * 10**6, wal  # below the threshold: DuckDB has not checkpointed it
    limit = _limit(con)
    memory.release_memory(con, limit)
    assert (_wal_bytes(con, "headwater_state") == 0) is checkpointed
    assert _limit(con) == limit
    assert con.execute("select count(*) from headwater_state.t").fetchone() == (rows,)
