"""The fast-path worker SIGKILLed at random moments while events land: after restarts, every
acknowledged event reached the destination, and the destination holds each message once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
import yaml
from journey_testkit import journeys_yaml

from activations.standins.meta import MetaStandin
from activations.standins.twilio import TwilioStandin
from activations.standins.webhook import WebhookStandin
from collector.config import CollectorConfig
from collector.server import Collector

KEY = "crash-write-key"
HEADWATER = str(Path(sys.executable).parent / "headwater")


@pytest.mark.slow
def test_sigkill_mid_flight_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    rng = random.Random(11)
    with WebhookStandin() as hook, TwilioStandin() as twilio, MetaStandin() as meta:
        journeys = tmp_path / "journeys.yml"
        data = journeys_yaml(hook.url, twilio.url, meta.url)
        data["frequency_caps"] = []
        journeys.write_text(yaml.safe_dump(data))
        # Hermetic: a HEADWATER_* variable another test left behind (a base URL) must not leak.
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("HEADWATER_")},
               "HEADWATER_DUCKDB_PATH": str(tmp_path / "warehouse" / "headwater.duckdb"),
               "HEADWATER_JOURNEYS_FILE": str(journeys),
               "HEADWATER_WEBHOOK_SECRET": hook.config.secret,
               "TWILIO_ACCOUNT_SID": twilio.config.account_sid,
               "TWILIO_AUTH_TOKEN": twilio.config.auth_token,
               "META_ACCESS_TOKEN": meta.config.access_token}
        landing = tmp_path / "warehouse" / "landing"
        config = CollectorConfig.from_env({"HEADWATER_WRITE_KEY": KEY}, port=0,
                                          landing_dir=landing)
        acked: list[str] = []
        with Collector(config) as collector:
            done = threading.Event()

            def load() -> None:
                session = requests.Session()
                for i in range(400):
                    email = f"crash-{i}@example.com"
                    body = {"type": "track", "event": "Signed Up",
                            "messageId": str(uuid.uuid4()), "anonymousId": f"a{i}",
                            "timestamp": datetime.now(UTC).isoformat(),
                            "context": {"traits": {"email": email}}}
                    if session.post(collector.url + "/v1/track", json=body, auth=(KEY, ""),
                                    timeout=10).ok:
                        acked.append(email)
                    time.sleep(0.02)  # ~10 s of load: room for several mid-flight kills
                done.set()

            loader = threading.Thread(target=load)
            loader.start()
            kills = 0
            while not done.is_set() or kills < 3:
                worker = subprocess.Popen([HEADWATER, "fastpath"], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                # Kill it mid-flight: once it is delivering (its start-up takes seconds on a
                # loaded machine), at a random moment a little later.
                before = len(hook.messages())
                deadline = time.monotonic() + 60
                while len(hook.messages()) == before and time.monotonic() < deadline \
                        and not done.is_set():
                    time.sleep(0.01)
                time.sleep(rng.uniform(0.0, 0.3))
                os.kill(worker.pid, signal.SIGKILL)
                worker.wait(10)
                kills += 1
            loader.join(30)
            # A last worker drains what the kills left, then stops cleanly.
            worker = subprocess.Popen([HEADWATER, "fastpath", "--seconds", "6"], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            assert worker.wait(60) == 0
    records = [r for m in hook.messages() if m.path == "/headwater/journeys/welcome"
               for r in m.body["records"]]
    assert kills >= 3 and len(acked) == 400
    stored = hook.records_stored()
    assert all(n == 1 for n in stored.values()), "a message was stored twice"
    emails = sorted({r["fields"]["email"] for r in records})
    assert emails == sorted(acked), f"{len(set(acked) - set(emails))} acknowledged, never sent"
