"""SIGKILL the sync at random points, run it again: nobody lost, no message applied twice."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from batch_receiver import SECRET, BatchReceiver
from synctools import make_audience, member

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("crash_runner.py")


def _spec(mode: str) -> dict:
    return {
        "name": "crashy", "audience": "audience_test", "channel": "email", "mode": mode,
        "destination": {"kind": "webhook", "credentials": {"signing_secret": "HOOK_SECRET"}},
        "identifiers": {"email": "email"},
        "templates": {"subject": "{{ first_name }}: {{ open_cart_items | length }} item(s)"},
        "batch_size": 25,
        "retry": {"total": 2, "backoff_factor": 0.01, "backoff_jitter": 0.01},
    }


def _start(db: Path, tmp: Path, url: str, spec: dict) -> subprocess.Popen:
    env = {**os.environ, "HOOK_SECRET": SECRET, "HEADWATER_WEBHOOK_BASE_URL": url,
           "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, str(RUNNER), str(db), str(tmp), json.dumps(spec)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=str(REPO),
    )


def _wait(proc: subprocess.Popen, seconds: float) -> None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=seconds)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["append", "mirror"])
def test_sigkill_at_random_points_loses_nothing_and_duplicates_nothing(tmp_path, mode):
    seed = int(os.environ.get("HEADWATER_CRASH_SEED", time.time_ns() % 10_000))
    rng = random.Random(seed)
    db = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(db))
    make_audience(con, [member(i) for i in range(1000)])
    con.close()
    receiver = BatchReceiver().start()
    receiver.delay_seconds = 0.01
    spec = _spec(mode)
    try:
        kills = 0
        for round_no in range(6):
            if mode == "mirror" and round_no == 4:  # churn between crashes: removes too
                con = duckdb.connect(str(db))
                con.execute("delete from audience_test where profile_id like 'p1%'")
                con.close()
            before = len(receiver.request_times)
            proc = _start(db, tmp_path, receiver.url, spec)
            if round_no % 3 == 2:
                # a kill at a random time: start-up, recovery, planning or sending
                _wait(proc, rng.uniform(0.2, 2.0))
            else:
                # a kill after a random number of requests, a random few ms into the next
                target = before + rng.randint(1, 15)
                deadline = time.monotonic() + 60
                while len(receiver.request_times) < target and proc.poll() is None:
                    assert time.monotonic() < deadline, "the sync never sent"
                    time.sleep(0.001)
                _wait(proc, rng.uniform(0.0, 0.03))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                if len(receiver.request_times) > before:
                    kills += 1  # killed while it was sending
        final = _start(db, tmp_path, receiver.url, spec)
        out, err = final.communicate(timeout=120)
        assert final.returncode == 0, err.decode()[-2000:]
        assert json.loads(out.splitlines()[-1])["ok"]
    finally:
        receiver.stop()
    assert kills >= 2, f"seed {seed}: fewer than 2 runs killed mid-send; the test proved little"
    con = duckdb.connect(str(db))
    audience = {r[0] for r in con.execute("select profile_id from audience_test").fetchall()}
    open_intents = con.execute("select count(*) from headwater_state.outbox").fetchall()[0][0]
    con.close()
    assert open_intents == 0, f"seed {seed}"
    resent = sum(1 for n in receiver.arrivals.values() if n > 1)
    print(f"seed {seed}: {kills} kills mid-send, {resent} records re-sent after a crash")
    if mode == "mirror":
        assert set(receiver.members) == audience, f"seed {seed}"
    else:
        # every member got exactly one message (one key), applied once
        by_profile = receiver.keys_by_profile()
        assert set(by_profile) >= audience, f"seed {seed}: members never messaged"
        assert all(len(keys) == 1 for keys in by_profile.values()), f"seed {seed}"
    assert receiver.bad_signatures == 0
