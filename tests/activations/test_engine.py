"""The sync engine end to end: real DuckDB file, real HTTP to a receiver on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest
from synctools import hook_sync, make_audience, member

from activations import outbox, plan
from activations.engine import run_sync
from activations.state import list_dead_letters, replay_dead_letters


@pytest.fixture(autouse=True, params=["one chunk", "chunks of 2"])
def chunks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: plans and drains in one chunk and page, and in many (2 rows each:
    the plan in many transactions, the drain in many pages with answers applied per page)."""
    if request.param == "chunks of 2":
        monkeypatch.setattr(plan, "PLAN_CHUNK_ROWS", 2)
        monkeypatch.setattr(outbox, "DRAIN_PAGE_ROWS", 2)


def _run(con: duckdb.DuckDBPyConnection, tmp_path: Path, env: dict[str, str], **kw):
    spec = kw.pop("spec", None) or hook_sync()
    return run_sync(con, spec, lock_dir=tmp_path, environ=env, **kw)


def test_initial_sync_delivers_every_member(warehouse, receiver, hook_env, tmp_path):
    make_audience(warehouse, [member(i) for i in range(10)])
    result = _run(warehouse, tmp_path, hook_env)
    assert result.ok, result
    assert result.planned == {"add": 10}
    assert result.delivered == 10
    assert set(receiver.members) == {f"p{i}" for i in range(10)}
    assert receiver.members["p3"] == {"email": "user3@example.com", "first_name": "Name3"}
    recs = warehouse.execute(
        "select status, count(*) from headwater_state.delivery_records group by 1"
    ).fetchall()
    assert recs == [("delivered", 10)]


def test_diff_add_update_remove_unchanged(warehouse, receiver, hook_env, tmp_path):
    make_audience(warehouse, [member(i) for i in range(6)])
    assert _run(warehouse, tmp_path, hook_env).delivered == 6
    # p0 changes, p1 leaves, p6 joins, p2..p5 unchanged
    warehouse.execute("update audience_test set first_name = 'Changed' where profile_id = 'p0'")
    warehouse.execute("delete from audience_test where profile_id = 'p1'")
    make_audience(warehouse, [member(i) for i in (0, 2, 3, 4, 5, 6)], name="tmp_aud")
    warehouse.execute("insert into audience_test select * from tmp_aud where profile_id = 'p6'")
    arrivals_before = dict(receiver.arrivals)
    result = _run(warehouse, tmp_path, hook_env)
    assert result.planned == {"update": 1, "remove": 1, "add": 1}
    assert result.ok
    assert receiver.members["p0"]["first_name"] == "Changed"
    assert "p1" not in receiver.members and "p6" in receiver.members
    new_keys = set(receiver.arrivals) - set(arrivals_before)
    assert len(new_keys) == 3  # only the diff left the warehouse
    # nothing changed: nothing sent
    again = _run(warehouse, tmp_path, hook_env)
    assert again.planned == {} and again.requests == 0


def test_full_resync_resends_everything_and_upsert_keeps_leavers(
    warehouse, receiver, hook_env, tmp_path
):
    spec = hook_sync(mode="upsert")
    make_audience(warehouse, [member(i) for i in range(4)])
    _run(warehouse, tmp_path, hook_env, spec=spec)
    warehouse.execute("delete from audience_test where profile_id = 'p3'")
    assert _run(warehouse, tmp_path, hook_env, spec=spec).planned == {}  # upsert: no removes
    full = _run(warehouse, tmp_path, hook_env, spec=spec, full_resync=True)
    assert full.planned == {"update": 3}
    assert full.delivered == 3


def test_consent_gate_in_sql_and_withdrawal_removes(warehouse, receiver, hook_env, tmp_path):
    spec = hook_sync(channel="ads")
    rows = [member(i) for i in range(4)]
    rows[2]["ads_consent"] = False
    rows[3]["ads_consent"] = None  # unknown is no
    make_audience(warehouse, rows)
    _run(warehouse, tmp_path, hook_env, spec=spec)
    assert set(receiver.members) == {"p0", "p1"}
    outbox_ids = {r[0] for r in warehouse.execute(
        "select profile_id from headwater_state.delivery_records").fetchall()}
    assert outbox_ids == {"p0", "p1"}  # never read out of the warehouse
    warehouse.execute("update audience_test set ads_consent = false where profile_id = 'p1'")
    result = _run(warehouse, tmp_path, hook_env, spec=spec)
    assert result.planned == {"remove": 1}
    assert set(receiver.members) == {"p0"}


def test_rejected_records_retry_next_run_then_dead_letter_then_replay(
    warehouse, receiver, hook_env, tmp_path
):
    make_audience(warehouse, [member(i) for i in range(5)])
    receiver.reject_profiles = {"p2"}
    first = _run(warehouse, tmp_path, hook_env)
    assert first.delivered == 4 and first.rejected == 1 and not first.ok
    key = warehouse.execute(
        "select idempotency_key from headwater_state.outbox where profile_id = 'p2'"
    ).fetchall()[0][0]
    for _ in range(2):  # attempts 2 and 3 (max_attempts=3)
        r = _run(warehouse, tmp_path, hook_env)
        assert r.revived == 1 and r.delivered == 0
    dead = list_dead_letters(warehouse, "hook")
    assert [(d.profile_id, d.attempts, d.last_error) for d in dead] == [
        ("p2", 3, "invalid recipient")
    ]
    assert dead[0].idempotency_key == key  # the same key on every attempt
    assert _run(warehouse, tmp_path, hook_env).requests == 0  # dead: not retried by itself
    never_delivered = warehouse.execute(
        "select count(*) from headwater_state.delivery_records "
        "where profile_id = 'p2' and status = 'delivered'"
    ).fetchall()[0][0]
    assert never_delivered == 0
    receiver.reject_profiles = set()
    assert replay_dead_letters(warehouse, "hook") == 1
    replayed = _run(warehouse, tmp_path, hook_env)
    assert replayed.resumed == 1 and replayed.delivered == 1 and replayed.ok
    assert receiver.applied[key]["profile_id"] == "p2"
    assert list_dead_letters(warehouse, "hook") == []


def test_destination_down_keeps_records_pending_for_next_run(
    warehouse, receiver, hook_env, tmp_path
):
    from batch_receiver import Scripted

    make_audience(warehouse, [member(i) for i in range(3)])
    receiver.script = [Scripted(503)] * 3  # 1 try + 2 retries
    result = _run(warehouse, tmp_path, hook_env)
    assert result.stopped and "503" in result.stopped
    assert result.pending == 3 and result.delivered == 0
    nxt = _run(warehouse, tmp_path, hook_env)
    assert nxt.resumed == 3 and nxt.delivered == 3 and nxt.ok
    assert set(receiver.members) == {"p0", "p1", "p2"}


def test_append_mode_sends_once_per_entry(warehouse, receiver, hook_env, tmp_path):
    spec = hook_sync(
        mode="append",
        templates={"subject": "{{ first_name }}, {{ open_cart_items | length }} item(s) left"
                   "{% if qualified_offer %} - use {{ qualified_offer }}{% endif %}"},
    )
    make_audience(warehouse, [member(0), member(1, qualified_offer=None)])
    assert _run(warehouse, tmp_path, hook_env, spec=spec).planned == {"send": 2}
    assert receiver.members["p0"]["subject"] == "Name0, 1 item(s) left - use WELCOME10"
    assert receiver.members["p1"]["subject"] == "Name1, 1 item(s) left"
    assert _run(warehouse, tmp_path, hook_env, spec=spec).planned == {}
    warehouse.execute("delete from audience_test where profile_id = 'p1'")
    assert _run(warehouse, tmp_path, hook_env, spec=spec).requests == 0  # leaving sends nothing
    make_audience(warehouse, [member(1)], name="back")
    warehouse.execute("insert into audience_test select * from back")
    assert _run(warehouse, tmp_path, hook_env, spec=spec).planned == {"send": 1}  # re-entry
    assert len(receiver.keys_by_profile()["p1"]) == 2
    with pytest.raises(Exception, match="full-resync"):
        _run(warehouse, tmp_path, hook_env, spec=spec, full_resync=True)


def test_template_error_rejects_only_that_record(warehouse, receiver, hook_env, tmp_path):
    spec = hook_sync(mode="append", templates={"line": "{{ open_cart_items[0].name }}"})
    make_audience(warehouse, [member(0), member(1, open_cart_items="[]")])
    result = _run(warehouse, tmp_path, hook_env, spec=spec)
    assert result.delivered == 1 and result.rejected == 1
    err = warehouse.execute(
        "select last_error from headwater_state.outbox where profile_id = 'p1'"
    ).fetchall()[0][0]
    assert "template 'line'" in err


def test_dry_run_writes_nothing(warehouse, receiver, hook_env, tmp_path):
    make_audience(warehouse, [member(i) for i in range(3)])
    result = _run(warehouse, tmp_path, hook_env, dry_run=True)
    assert result.planned == {"add": 3} and len(result.sample) == 3
    assert receiver.request_times == []
    schemas = {r[0] for r in warehouse.execute(
        "select schema_name from information_schema.schemata").fetchall()}
    assert "headwater_state" not in schemas


def test_overlapping_runs_are_refused(warehouse, receiver, hook_env, tmp_path):
    from activations.lock import SyncAlreadyRunningError, SyncLock

    make_audience(warehouse, [member(0)])
    with SyncLock(tmp_path, "hook"), pytest.raises(SyncAlreadyRunningError, match="already"):
        _run(warehouse, tmp_path, hook_env)
    assert _run(warehouse, tmp_path, hook_env).delivered == 1


def test_state_in_attached_database(tmp_path, receiver, hook_env):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    con.execute(f"attach '{tmp_path / 'state.duckdb'}' as headwater_state")
    make_audience(con, [member(i) for i in range(3)])
    assert run_sync(con, hook_sync(), lock_dir=tmp_path, environ=hook_env).delivered == 3
    n = con.execute("select count(*) from headwater_state.main.sync_state__hook").fetchall()
    assert n == [(3,)]
    con.close()


def test_missing_column_and_missing_secret_are_clear(warehouse, receiver, hook_env, tmp_path):
    from activations.config import SyncConfigError

    make_audience(warehouse, [member(0)])
    with pytest.raises(SyncConfigError, match=r"lacks column\(s\): offer \(for fields.promo\)"):
        _run(warehouse, tmp_path, hook_env, spec=hook_sync(fields={"promo": "offer"}))
    with pytest.raises(SyncConfigError, match="HOOK_SECRET"):
        _run(warehouse, tmp_path, {"HEADWATER_WEBHOOK_BASE_URL": receiver.url})


def test_bad_signature_secret_stops_without_rejecting(warehouse, receiver, hook_env, tmp_path):
    make_audience(warehouse, [member(0)])
    env = {**hook_env, "HOOK_SECRET": "wrong"}
    result = _run(warehouse, tmp_path, env)
    assert result.stopped and "signing secret" in result.stopped
    assert result.rejected == 0 and result.pending == 1
    assert "wrong" not in result.stopped


def test_warehouse_encoded_records_match_python_mapped_records(tmp_path, hook_env):
    """The batch fast path (records encoded in DuckDB) sends what the Record path sends."""
    from batch_receiver import BatchReceiver

    from activations.destinations.webhook import WebhookDestination

    class RecordPathWebhook(WebhookDestination):
        def accepts_encoded(self) -> bool:
            return False

    rows = [member(0), member(1, first_name=None, qualified_offer="it's \"quoted\" \u00e9"),
            member(2, open_cart_items='[{"sku": "s/2", "price": 9.5, "n": null}]')]
    fields = {"first_name": "first_name", "offer": "qualified_offer", "cart": "open_cart_items"}
    received = []
    for use_record_path in (False, True):
        con = duckdb.connect(str(tmp_path / f"wh{use_record_path}.duckdb"))
        make_audience(con, rows)
        other = BatchReceiver().start()
        try:
            env = {**hook_env, "HEADWATER_WEBHOOK_BASE_URL": other.url}
            spec = hook_sync(fields=fields)
            from activations.engine import build_destination, prepare

            dest, http = None, None
            if use_record_path:
                real, http = build_destination(prepare(con, spec), env)
                dest = RecordPathWebhook.__new__(RecordPathWebhook)
                dest.__dict__.update(real.__dict__)
            result = run_sync(con, spec, lock_dir=tmp_path, environ=env, destination=dest)
            assert result.ok and result.delivered == 3, result
            # keys differ between the runs (they include the run id): compare by member
            received.append({r["profile_id"]: (r["action"], r["fields"])
                             for r in other.applied.values()})
            if http is not None:
                http.close()
        finally:
            other.stop()
            con.close()
    fast, slow = received
    assert fast == slow
    assert len(fast) == 3 and fast["p1"][1]["first_name"] is None
    assert fast["p2"][1]["cart"] == [{"sku": "s/2", "price": 9.5, "n": None}]


def test_413_splits_an_encoded_batch_and_keeps_per_record_outcomes(
    warehouse, receiver, hook_env, tmp_path
):
    from batch_receiver import Scripted

    make_audience(warehouse, [member(i) for i in range(4)])
    receiver.script = [Scripted(413)]
    receiver.reject_profiles = {"p3"}
    result = _run(warehouse, tmp_path, hook_env, spec=hook_sync(batch_size=4))
    assert result.delivered == 3 and result.rejected == 1
    assert result.requests == 2  # the two halves; the refused whole is not an answer
    statuses = dict(warehouse.execute(
        "select profile_id, status from headwater_state.delivery_records").fetchall())
    assert statuses == {"p0": "delivered", "p1": "delivered", "p2": "delivered",
                        "p3": "rejected"}
    assert set(receiver.members) == {"p0", "p1", "p2"}
