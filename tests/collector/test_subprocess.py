"""`headwater collect --port 0` as a real process: its URL, graceful stop, and kill -9 safety."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import requests
from collector_testkit import WRITE_KEY, landed, python_message, python_post

REPO_ROOT = Path(__file__).resolve().parents[2]
# Runs the command object itself, so the test does not depend on where the CLI registers it.
RUNNER = "from headwater.commands.collect import collect; collect()"


class CollectorProcess:
    def __init__(self, landing_dir: Path) -> None:
        env = {
            **os.environ,
            "HEADWATER_WRITE_KEY": WRITE_KEY,
            "HEADWATER_LANDING_DIR": str(landing_dir),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]),
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RUNNER, "--port", "0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # bounded by the process: it prints or exits
        if not line.startswith("Collecting at "):
            self.proc.kill()
            raise AssertionError(f"collector did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.split()[2]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[type[CollectorProcess]]:
    started: list[CollectorProcess] = []

    class Tracked(CollectorProcess):
        def __init__(self, landing_dir: Path) -> None:
            super().__init__(landing_dir)
            started.append(self)

    yield Tracked
    for process in started:
        process.close()


def test_prints_its_url_serves_and_stops_on_sigterm(
    spawn: type[CollectorProcess], tmp_path: Path
) -> None:
    landing_dir = tmp_path / "landing"
    process = spawn(landing_dir)
    assert process.url.startswith("http://127.0.0.1:")
    assert requests.get(process.url + "/health", timeout=5).json() == {"ok": True}
    message = python_message()
    assert python_post(process.url, [message]).status_code == 200
    process.proc.send_signal(signal.SIGTERM)
    out, err = process.proc.communicate(timeout=20)
    assert process.proc.returncode == 0, err
    assert "Stopped; 1 files landed." in out
    assert WRITE_KEY not in out + err
    assert [r["message_id"] for r in landed(landing_dir)] == [message["messageId"]]


@pytest.mark.slow
def test_kill_9_mid_load_loses_no_acknowledged_message(
    spawn: type[CollectorProcess], tmp_path: Path
) -> None:
    landing_dir = tmp_path / "landing"
    process = spawn(landing_dir)
    acknowledged: list[dict] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        session = requests.Session()
        for _ in range(10_000):  # bounded; the kill ends it long before
            if stop.is_set():
                return
            batch = [python_message() for _ in range(10)]
            try:
                response = python_post(process.url, batch, session=session)
            except requests.RequestException:
                return
            if response.status_code == 200:
                with lock:
                    acknowledged.extend(batch)

    clients = [threading.Thread(target=client) for _ in range(4)]
    for c in clients:
        c.start()
    deadline = time.monotonic() + 10
    while len(acknowledged) < 400 and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(process.proc.pid, signal.SIGKILL)
    stop.set()
    for c in clients:
        c.join(30)
    process.proc.wait(10)
    assert len(acknowledged) >= 400

    # Every visible file reads whole; every acknowledged message is there exactly once.
    for path in (landing_dir / "events").glob("*.parquet"):
        pq.read_table(path)
    ids = [r["message_id"] for r in landed(landing_dir)]
    assert len(ids) == len(set(ids))
    assert {m["messageId"] for m in acknowledged} <= set(ids)

    # After a restart, SDK retries of acknowledged messages do not land again.
    again = spawn(landing_dir)
    assert not list((landing_dir / "events").glob(".*.tmp"))
    for start in range(0, 200, 50):
        assert python_post(again.url, acknowledged[start : start + 50]).status_code == 200
    assert len(landed(landing_dir)) == len(ids)
