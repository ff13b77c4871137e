"""Incremental plans from the published change log equal the whole-audience diff.

Real publishes (headwater/snapshots.py, as `headwater build` does them), the engine on a
reader connection over the snapshots, real HTTP to the batch receiver.
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import duckdb
import pytest
from batch_receiver import BatchReceiver
from synctools import hook_sync, make_audience, member

from activations import diff as diff_sql
from activations import plan as plan_sql
from activations import state
from activations.config import Mode, SyncSpec
from activations.engine import prepare, run_sync
from activations.state import read_cursor
from headwater.config import Settings
from headwater.snapshots import publish, published_dir, reader_connection

MEMBERS = 300


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"HEADWATER_DUCKDB_PATH": str(tmp_path / "wh.duckdb")})


def _diff_rows(con: duckdb.DuckDBPyConnection, plan: diff_sql.SyncPlan,
               changes: diff_sql.Changes | None) -> set[tuple[str, str, int]]:
    diff_sql.compute_diff(con, plan, full_resync=False, changes=changes)
    rows = {(str(p), str(a), int(h)) for p, a, h in con.execute(
        "select profile_id, action, row_hash from hw_diff").fetchall()}
    diff_sql.drop_plan_tables(con)
    return rows


def _candidate_state(con: duckdb.DuckDBPyConnection, plan: diff_sql.SyncPlan,
                     changes: diff_sql.Changes) -> tuple[set[tuple[str, int, str]], ...]:
    """The state an incremental plan used for its candidates (derived from the change log in
    mirror and append mode), and the state table's rows for the same candidates."""
    diff_sql.compute_diff(con, plan, full_resync=False, changes=changes)
    ids = "identifiers" if plan.mode == Mode.MIRROR else "null"
    used = {(str(p), int(h), str(i)) for p, h, i in con.execute(
        f"select profile_id, row_hash, {ids} from hw_state").fetchall()}
    diff_sql.drop_plan_tables(con)
    keys = f"select profile_id from headwater_state.outbox where sync_name = '{plan.sync_name}'"
    if changes.relation is not None:
        keys += f" union select cast(profile_id as varchar) from {changes.relation}"
    table = {(str(p), int(h), str(i)) for p, h, i in con.execute(
        f"select profile_id, row_hash, {ids} from {diff_sql.state_sql(con, plan.sync_name)} "
        f"where profile_id in ({keys})").fetchall()}
    return used, table


def _sync(settings: Settings, spec: SyncSpec, env: dict[str, str], tmp_path: Path,
          compare: bool = True, **kw: object):
    """One run on the published snapshots; first, when the cursor allows an incremental plan,
    check that its diff is the whole-audience diff, row for row, and that the state it used
    for its candidates is the state table's."""
    folder = published_dir(settings)
    with reader_connection(settings, folder=folder) as (con, manifest):
        log = diff_sql.ChangeLog(manifest, folder)
        plan = prepare(con, spec).plan
        changes = diff_sql.changes_since_cursor(con, plan, log)
        if compare and changes is not None:
            assert _diff_rows(con, plan, changes) == _diff_rows(con, plan, None)
            if diff_sql.CANDIDATE_PART_ROWS > MEMBERS:  # one part: hw_state holds them all
                used, table = _candidate_state(con, plan, changes)
                assert used == table
        return run_sync(con, spec, lock_dir=tmp_path, environ=env, change_log=log, **kw)


def _expected(wh: duckdb.DuckDBPyConnection) -> dict[str, dict[str, str]]:
    rows = wh.execute("select profile_id, email, first_name from audience_test "
                      "where email_consent and email is not null").fetchall()
    return {p: {"email": e, "first_name": f} for p, e, f in rows}


@pytest.mark.parametrize(("compact_fraction", "part_rows"), [
    pytest.param(0.0, diff_sql.CANDIDATE_PART_ROWS, id="compact-every-run"),
    pytest.param(1e9, diff_sql.CANDIDATE_PART_ROWS, id="log-only"),
    pytest.param(1e9, 16, id="log-only, candidates in parts of 16"),
])
@pytest.mark.parametrize("mode", ["mirror", "upsert", "append"])
def test_incremental_plans_equal_the_full_diff_through_churn_and_rejections(
    tmp_path: Path, receiver: BatchReceiver, hook_env: dict[str, str], mode: str,
    compact_fraction: float, part_rows: int, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The state read through its log of deliveries, folded into the base after every run or
    # never (activations/state.py): both must read as the same state. The candidates of a
    # plan compared all at once or a part at a time (diff.diff_parts), each part written
    # before the next is compared.
    monkeypatch.setattr(state, "COMPACT_FRACTION", compact_fraction)
    monkeypatch.setattr(diff_sql, "CANDIDATE_PART_ROWS", part_rows)
    seed = random.randrange(100_000)
    rng = random.Random(seed)
    settings = _settings(tmp_path)
    # Attempts enough that a record refused in several rounds is not dead-lettered here.
    spec = hook_sync(mode=mode, batch_size=50, max_attempts=20)
    wh = duckdb.connect(str(settings.duckdb_path))
    make_audience(wh, [member(i) for i in range(MEMBERS)])
    publish(settings, con=wh)
    first = _sync(settings, spec, hook_env, tmp_path)
    assert first.ok and not first.incremental, (seed, first)
    next_id = MEMBERS
    for round_no in range(6):
        ids = [r[0] for r in wh.execute("select profile_id from audience_test").fetchall()]
        picked = rng.sample(ids, 40)
        changed, unmapped, withdrawn, granted, no_email, left = (
            picked[0:8], picked[8:14], picked[14:20], picked[20:26], picked[26:30], picked[30:36])
        for p in changed:
            wh.execute("update audience_test set first_name = ? where profile_id = ?",
                       [f"R{round_no}", p])
        for p in unmapped:  # a column the sync does not map: the publish sees it, the diff not
            wh.execute("update audience_test set phone = ? where profile_id = ?",
                       [f"+1555{round_no}", p])
        wh.execute("update audience_test set email_consent = false "
                   "where list_contains(?, profile_id)", [withdrawn])
        wh.execute("update audience_test set email_consent = true "
                   "where list_contains(?, profile_id)", [granted])
        wh.execute("update audience_test set email = null where list_contains(?, profile_id)",
                   [no_email])
        wh.execute("delete from audience_test where list_contains(?, profile_id)", [left])
        make_audience(wh, [member(i) for i in range(next_id, next_id + 5)], name="joiners")
        wh.execute("insert into audience_test select * from joiners")
        next_id += 5
        # Some of this round's records are refused; they must be retried by later rounds
        # although no change file names them again.
        receiver.reject_profiles = set(rng.sample(changed + picked[36:], 3))
        if round_no % 2:
            # Every other round two builds between runs, the second changing again some of
            # the profiles the first changed: only each profile's latest change counts.
            publish(settings, con=wh)
            wh.execute("update audience_test set first_name = 'Again' "
                       "where list_contains(?, profile_id)", [changed[:4]])
            make_audience(wh, [member(int(p[1:])) for p in left[:2]], name="rejoiners")
            wh.execute("insert into audience_test select * from rejoiners")
            wh.execute("delete from audience_test where profile_id = ?", [f"p{next_id - 1}"])
        publish(settings, con=wh)
        result = _sync(settings, spec, hook_env, tmp_path)
        assert result.incremental, (seed, round_no, result)
        assert result.stopped is None, (seed, result)
    receiver.reject_profiles = set()
    publish(settings, con=wh)  # nothing changed: the rejected rows come from the outbox only
    last = _sync(settings, spec, hook_env, tmp_path)
    assert last.incremental and last.ok, (seed, last)
    expected = _expected(wh)
    if mode == "mirror":
        assert receiver.members == expected, seed
    else:  # upsert and append keep leavers: every current member is there as it is now
        assert {p: receiver.members.get(p) for p in expected} == expected, seed
    wh.close()


def test_whole_audience_compared_when_the_cursor_cannot_vouch(
    tmp_path: Path, receiver: BatchReceiver, hook_env: dict[str, str]
) -> None:
    settings = _settings(tmp_path)
    spec = hook_sync(batch_size=50)
    wh = duckdb.connect(str(settings.duckdb_path))
    make_audience(wh, [member(i) for i in range(20)])
    publish(settings, con=wh)
    assert not _sync(settings, spec, hook_env, tmp_path).incremental  # no cursor yet

    def churn_and_run(sync: SyncSpec = spec) -> bool:
        wh.execute("update audience_test set first_name = first_name || 'x' "
                   "where profile_id = 'p1'")
        publish(settings, con=wh)
        result = _sync(settings, sync, hook_env, tmp_path)
        assert result.ok and result.planned == {"update": 1}, result
        assert receiver.members["p1"]["first_name"].endswith("x")
        return result.incremental

    assert churn_and_run()
    # Another field mapped: every row hashes differently, the plan compares them all.
    wider = hook_sync(batch_size=50, fields={"first_name": "first_name",
                                             "offer": "qualified_offer"})
    folder = published_dir(settings)
    with reader_connection(settings, folder=folder) as (con, manifest):
        assert diff_sql.changes_since_cursor(
            con, prepare(con, wider).plan, diff_sql.ChangeLog(manifest, folder)) is None
    # The published folder wiped and published again from seq 1: another lineage.
    shutil.rmtree(folder)
    publish(settings, con=wh)
    assert not churn_and_run()
    assert churn_and_run()
    # A plan made without the change log forgets the cursor.
    with reader_connection(settings, folder=folder) as (con, _):
        assert read_cursor(con, spec.name) is not None
        assert run_sync(con, spec, lock_dir=tmp_path, environ=hook_env).planned == {}
        assert read_cursor(con, spec.name) is None
    assert not churn_and_run()
    # --full-resync compares (and sends) everything, and leaves a cursor behind.
    publish(settings, con=wh)
    with reader_connection(settings, folder=folder) as (con, manifest):
        full = run_sync(con, spec, lock_dir=tmp_path, environ=hook_env, full_resync=True,
                        change_log=diff_sql.ChangeLog(manifest, folder))
        assert not full.incremental and full.planned == {"update": 20}
    assert churn_and_run()
    wh.close()


@pytest.mark.parametrize("mode", ["mirror", "upsert", "append"])
def test_the_whole_audience_compare_in_partitions_is_the_same_diff(
    tmp_path: Path, receiver: BatchReceiver, hook_env: dict[str, str], mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past COMPARE_PART_ROWS state rows the compare runs in hash partitions, under its
    own memory budget: the same adds, updates and removes as one join, and the sync's budget
    is back afterwards."""
    settings = _settings(tmp_path)
    spec = hook_sync(batch_size=50, mode=mode)
    wh = duckdb.connect(str(settings.duckdb_path))
    make_audience(wh, [member(i) for i in range(60)])
    publish(settings, con=wh)
    assert _sync(settings, spec, hook_env, tmp_path).ok
    wh.execute("update audience_test set first_name = 'Changed' where profile_id in "
               "('p1', 'p7', 'p30')")
    wh.execute("delete from audience_test where profile_id in ('p2', 'p40')")
    make_audience(wh, [member(i) for i in range(60, 65)], name="joined")
    wh.execute("insert into audience_test select * from joined")
    publish(settings, con=wh)
    wh.close()
    joins: list[str] = []
    diff = diff_sql.diff_sql

    def counted(*args: object) -> str:
        sql = diff(*args)  # type: ignore[arg-type]
        joins.append(sql)
        return sql

    monkeypatch.setattr(diff_sql, "diff_sql", counted)
    with reader_connection(settings) as (con, _):
        plan = prepare(con, spec).plan
        budget = con.execute("select current_setting('memory_limit')").fetchone()
        whole = _diff_rows(con, plan, None)
        assert len(joins) == 1
        monkeypatch.setattr(diff_sql, "COMPARE_PART_ROWS", 8)
        assert _diff_rows(con, plan, None) == whole
        assert len(joins) == 1 + 60 // 8 + 1
        assert con.execute("select current_setting('memory_limit')").fetchone() == budget
    expected = {"mirror": {"add": 5, "update": 3, "remove": 2},
                "upsert": {"add": 5, "update": 3},
                "append": {"send": 8, "leave": 2}}[mode]
    actions: dict[str, int] = {}
    for _, action, _ in whole:
        actions[action] = actions.get(action, 0) + 1
    assert actions == expected


def test_the_sync_connection_has_a_bounded_memory_budget(tmp_path: Path) -> None:
    """HEADWATER_SYNC_MEMORY_LIMIT bounds it (DuckDB's default is 80% of RAM)."""
    env = {"HEADWATER_DUCKDB_PATH": str(tmp_path / "wh.duckdb")}
    wh = duckdb.connect(env["HEADWATER_DUCKDB_PATH"])
    make_audience(wh, [member(0)])
    publish(Settings.from_env(env), con=wh)
    wh.close()
    settings = Settings.from_env({**env, "HEADWATER_SYNC_MEMORY_LIMIT": "64MiB"})
    with reader_connection(settings) as (con, _):
        assert con.execute("select current_setting('memory_limit')").fetchone() == ("64.0 MiB",)
        spill = con.execute("select current_setting('temp_directory')").fetchone()
        assert spill == (str(tmp_path / "headwater_state.duckdb.tmp"),)


def test_the_sync_memory_budget_is_bounded_when_nothing_is_set(tmp_path: Path) -> None:
    """Without HEADWATER_SYNC_MEMORY_LIMIT the engine's default applies, not DuckDB's 80% of
    RAM; an empty value asks for DuckDB's own."""
    env = {"HEADWATER_DUCKDB_PATH": str(tmp_path / "wh.duckdb")}
    wh = duckdb.connect(env["HEADWATER_DUCKDB_PATH"])
    make_audience(wh, [member(0)])
    publish(Settings.from_env(env), con=wh)
    default_limit = wh.execute("select current_setting('memory_limit')").fetchone()
    wh.close()
    with reader_connection(Settings.from_env(env)) as (con, _):
        assert con.execute("select current_setting('memory_limit')").fetchone() == ("244.1 MiB",)
    unset = Settings.from_env({**env, "HEADWATER_SYNC_MEMORY_LIMIT": ""})
    with reader_connection(unset) as (con, _):
        assert con.execute("select current_setting('memory_limit')").fetchone() == default_limit


@pytest.mark.parametrize(("total", "rows"), [
    pytest.param(150_000, plan_sql.PLAN_CHUNK_ROWS, id="small plan: 10k"),
    pytest.param(900_000, 2 * plan_sql.ROW_GROUP_ROWS, id="1M: four chunks of two row groups"),
    pytest.param(9_000_000, 2 * plan_sql.ROW_GROUP_ROWS, id="10M: still two row groups"),
])
def test_plan_chunks_stop_growing_with_the_plan(total: int, rows: int) -> None:
    """What a plan's transaction and a drain's page hold is bounded however large the diff."""
    assert plan_sql.plan_chunk_rows(total, plan_sql.PLAN_CHUNK_ROWS) == rows


def test_a_first_sync_folds_into_the_base_chunk_by_chunk(
    tmp_path: Path, receiver: BatchReceiver, hook_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The adds of a plan made against an empty state have no state row: each fold of the
    first sync appends them to the base (no log to compact afterwards); the next plan's
    deliveries go to the log."""
    compactions: list[bool] = []
    real_compact = state.compact_state

    def observed(*args: object, **kw: object) -> bool:
        compactions.append(real_compact(*args, **kw))  # type: ignore[arg-type]
        return compactions[-1]

    monkeypatch.setattr(state, "compact_state", observed)
    settings = _settings(tmp_path)
    spec = hook_sync(batch_size=50)
    wh = duckdb.connect(str(settings.duckdb_path))
    make_audience(wh, [member(i) for i in range(MEMBERS)])
    publish(settings, con=wh)
    first = _sync(settings, spec, hook_env, tmp_path, ack_flush_rows=40)
    assert first.ok, first
    assert compactions == [False], "the first sync logged deliveries and had to compact them"
    expected = _expected(wh)
    with reader_connection(settings, folder=published_dir(settings)) as (con, _):
        base = con.execute(f"select count(*), count(distinct profile_id) from "
                           f"{state.state_table(spec.name)}").fetchone()
        logged = con.execute(f"select count(*) from {state.state_log_table(spec.name)}")
        assert base == (len(expected), len(expected))
        assert logged.fetchone() == (0,)
    wh.execute("update audience_test set first_name = 'Later' where profile_id = 'p3'")
    publish(settings, con=wh)
    again = _sync(settings, spec, hook_env, tmp_path)
    assert again.ok and again.planned == {"update": 1}, again
    with reader_connection(settings, folder=published_dir(settings)) as (con, _):
        logged = con.execute(f"select profile_id from {state.state_log_table(spec.name)}")
        assert logged.fetchall() == [("p3",)]
        assert con.execute(f"select count(*) from {state.current_state_sql(spec.name)}"
                           ).fetchone() == (len(expected),)
    assert receiver.members["p3"]["first_name"] == "Later"
    wh.close()
