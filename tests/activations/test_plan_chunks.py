"""The plan is written to the outbox in bounded transactions; a run killed between two of
them leaves a partial plan, which the next run deletes and makes again: nothing is sent from
it, nobody is lost, nothing arrives twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from batch_receiver import SECRET, BatchReceiver
from synctools import make_audience, member

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("plan_kill_runner.py")
SPEC = {
    "name": "chunky", "audience": "audience_test", "channel": "email", "mode": "mirror",
    "destination": {"kind": "webhook", "credentials": {"signing_secret": "HOOK_SECRET"}},
    "identifiers": {"email": "email"}, "fields": {"first_name": "first_name"},
    "batch_size": 50, "retry": {"total": 2, "backoff_factor": 0.01, "backoff_jitter": 0.01},
}
CHUNK_ROWS = 100


def _run(db: Path, tmp: Path, url: str, kill_at_commit: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOOK_SECRET": SECRET, "HEADWATER_WEBHOOK_BASE_URL": url,
           "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(RUNNER), str(db), str(tmp), json.dumps(SPEC), str(CHUNK_ROWS),
         str(kill_at_commit)],
        env=env, capture_output=True, cwd=str(REPO), timeout=120,
    )


def _outbox(db: Path) -> tuple[int, list[tuple[str, str | None]]]:
    con = duckdb.connect(str(db))
    try:
        (rows,) = con.execute("select count(*) from headwater_state.outbox").fetchone() or (0,)
        runs = con.execute("select kind, status from headwater_state.sync_runs "
                           "order by started_at").fetchall()
    finally:
        con.close()
    return int(rows), [(str(k), s) for k, s in runs]


def test_a_plan_killed_between_its_chunks_is_made_again(tmp_path: Path) -> None:
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    make_audience(con, [member(i) for i in range(1000)])
    con.close()
    receiver = BatchReceiver().start()
    try:
        for churn in (None, "delete from audience_test where profile_id like 'p1%'; "
                            "update audience_test set first_name = 'New' "
                            "where profile_id like 'p2%'"):
            if churn:
                con = duckdb.connect(str(db))
                con.execute(churn)
                con.close()
            before = len(receiver.request_times)
            # Commit 1 is the recovery's, the next are the plan's chunks: the first round is
            # killed before its 4th chunk commits, the second (3 chunks) before the plan does.
            killed = _run(db, tmp_path, receiver.url, kill_at_commit=5)
            assert killed.returncode == -9, killed.stderr.decode()[-2000:]
            written, runs = _outbox(db)
            assert written > CHUNK_ROWS, "the plan's chunks were not committed one by one"
            assert runs[-1] == ("sync", "planning")
            assert len(receiver.request_times) == before, "sent before the plan committed"

            finished = _run(db, tmp_path, receiver.url, kill_at_commit=0)
            assert finished.returncode == 0, finished.stderr.decode()[-2000:]
            result = json.loads(finished.stdout.decode().splitlines()[-1])
            # Not resumed from the partial plan: it was deleted and planned again in full.
            assert result["ok"] and result["resumed"] == 0, result
            assert _outbox(db)[0] == 0
    finally:
        receiver.stop()
    con = duckdb.connect(str(db))
    audience = {p: {"email": e, "first_name": f} for p, e, f in con.execute(
        "select profile_id, email, first_name from audience_test").fetchall()}
    con.close()
    assert receiver.members == audience
    assert all(n == 1 for n in receiver.arrivals.values()), "a record arrived twice"
    assert receiver.bad_signatures == 0
