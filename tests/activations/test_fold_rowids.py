"""What a drain holds does not grow with the outbox: each page's fold reads only the outbox
rows of its page (by rowid), not the whole outbox, and a rowid range that no longer holds the
answered intents (a checkpoint moved them) still applies every answer, by reading the whole
outbox as before; no checkpoint during a drain merges row groups (vacuum), and DuckDB's cache
of table blocks is let go of between pages."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import pytest
from batch_receiver import SECRET, BatchReceiver
from synctools import hook_sync, make_audience, member

from activations import outbox, state
from activations.engine import run_sync


def test_each_page_folds_only_its_own_rows(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    make_audience(con, [member(i) for i in range(300)])
    monkeypatch.setattr(outbox, "DRAIN_PAGE_ROWS", 30)
    ranges: list[tuple[int, int] | None] = []
    withins: list[str] = []
    fold_acks, apply_delivered, apply_other = (state.fold_acks, state._apply_delivered,
                                               state._apply_other)

    vacuum: list[int] = []

    def spy_fold(*args: Any) -> Any:
        ranges.append(args[4] if len(args) > 4 else None)
        vacuum.append(args[0].execute("select current_setting('max_vacuum_tasks')").fetchone()[0])
        return fold_acks(*args)

    def spy_delivered(con: Any, sync_name: str, within: str = "") -> int:
        withins.append(within)
        return apply_delivered(con, sync_name, within)

    def spy_other(con: Any, sync_name: str, max_attempts: int, within: str = "") -> Any:
        withins.append(within)
        return apply_other(con, sync_name, max_attempts, within)

    released: list[str | None] = []
    release_memory = outbox.release_memory

    def spy_release(con: Any, limit: str | None) -> None:
        released.append(limit)
        release_memory(con, limit)

    monkeypatch.setattr(outbox, "release_memory", spy_release)
    con.execute("set memory_limit = '200MB'")
    limit = con.execute("select current_setting('memory_limit')").fetchone()
    monkeypatch.setattr(state, "fold_acks", spy_fold)
    monkeypatch.setattr(state, "_apply_delivered", spy_delivered)
    monkeypatch.setattr(state, "_apply_other", spy_other)
    receiver = BatchReceiver().start()
    try:
        # Some records are refused: their answers are applied within the range too.
        receiver.reject_profiles = {f"p{i}" for i in range(0, 300, 7)}
        env = {"HOOK_SECRET": SECRET, "HEADWATER_WEBHOOK_BASE_URL": receiver.url}
        result = run_sync(con, hook_sync(batch_size=10), lock_dir=tmp_path, environ=env)
    finally:
        receiver.stop()
    assert result.delivered == 300 - len(range(0, 300, 7))
    assert result.rejected == len(range(0, 300, 7))
    assert len(ranges) >= 10, ranges
    # A page's rows, not the outbox's 300: each fold is given a range of at most a page...
    for span in ranges:
        assert span is not None and span[1] - span[0] < 30, ranges
    # ... and found every answered intent in it, so it read only that range.
    assert withins and all("rowid between" in w for w in withins), withins
    # No vacuum while draining, as it was after; the cache let go of before every page, and
    # the memory limit as it was.
    assert set(vacuum) == {0}, vacuum
    assert con.execute("select current_setting('max_vacuum_tasks')").fetchone() == (100,)
    assert len(released) >= len(ranges) and set(released) == {limit[0]}, released
    assert con.execute("select current_setting('memory_limit')").fetchone() == limit
    con.close()


def test_a_range_that_misses_the_intents_still_applies_every_answer(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    state.ensure_state(con, "s")
    con.execute(
        f"""insert into {state.SCHEMA}.outbox (sync_name, idempotency_key, run_id, profile_id,
            action, row_hash, payload, identifiers, status, attempts, created_at, updated_at)
        select 's', 'k' || i, 'plan', 'p' || i, 'add', i::uhugeint, '{{}}', '{{}}', 'pending', 0,
               now(), now()
        from range(100) t(i)"""
    )
    con.execute(
        """create temp table acks as
        select 's' as sync_name, 'run' as run_id, 'k' || i as idempotency_key,
               'p' || i as profile_id, 'add' as action,
               case when i < 90 then 'delivered' else 'rejected' end as status,
               1 as attempt, 200 as response_code, null::varchar as error,
               null::varchar as external_id, now()::timestamp as attempted_at
        from range(100) t(i)"""
    )
    con.execute("begin transaction")
    # Rowids where none of the intents are (as after a checkpoint that moved them).
    folded = state.fold_acks(con, "s", "acks", 5, rowids=(1_000, 2_000))
    con.execute("commit")
    assert (folded.delivered, folded.rejected) == (90, 10)
    rows = con.execute(f"select status, count(*) from {state.SCHEMA}.outbox group by status")
    assert rows.fetchall() == [("rejected", 10)]
    (in_state,) = con.execute(
        f"select count(*) from {state.current_state_sql('s')}").fetchone() or (0,)
    assert in_state == 90
    con.close()
