"""Subprocess mode: serves, takes faults over the admin API, persists state for a later reader."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
import requests

from activations.standins import Fault, FaultPlan
from activations.standins.process import StandinProcess
from activations.standins.sendgrid import SendGridConfig
from activations.standins.specs import SpecValidators, body_schema_ref

AUTH = {"Authorization": f"Bearer {SendGridConfig().api_key}"}


def _wait_for(path: Path, predicate, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            data = json.loads(path.read_text())
            if predicate(data):
                return data
        time.sleep(0.05)
    raise AssertionError(f"state file {path} never satisfied the predicate")


def test_subprocess_serves_persists_and_takes_faults(tmp_path: Path) -> None:
    state = tmp_path / "sendgrid.json"
    with StandinProcess("sendgrid", state_file=state,
                        faults=FaultPlan(seed=1)) as proc:
        assert proc.url.startswith("http://127.0.0.1:")
        r = requests.put(f"{proc.url}/v3/marketing/contacts", headers=AUTH, timeout=10,
                         json={"list_ids": ["L"], "contacts": [{"email": "a@x.io"}]})
        assert r.status_code == 202
        # Written on change (debounced), readable while the stand-in still runs.
        data = _wait_for(state, lambda d: d["lists"].get("L") == ["a@x.io"])
        assert data["standin"] == "sendgrid"
        proc.script(Fault("429"), count=2)
        codes = [requests.put(f"{proc.url}/v3/marketing/contacts", headers=AUTH, timeout=10,
                              json={"contacts": [{"email": "b@x.io"}]}).status_code
                 for _ in range(3)]
        assert codes == [429, 429, 202]
        assert sorted(proc.state()["lists"]["L"]) == ["a@x.io"]
        assert len(proc.state()["contacts"]) == 2
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(10) == 0
    final = json.loads(state.read_text())
    assert {c["email"] for c in final["contacts"].values()} == {"a@x.io", "b@x.io"}


@pytest.mark.parametrize("name", ["webhook", "twilio", "meta", "google_ads", "klaviyo",
                                  "iterable", "braze"])
def test_every_standin_starts_as_a_process(name: str) -> None:
    with StandinProcess(name) as proc:
        assert requests.get(f"{proc.url}/__headwater/state", timeout=5).json()["standin"] == name


def test_unknown_config_field_is_refused() -> None:
    with pytest.raises(RuntimeError, match="unknown config field"):
        StandinProcess("sendgrid", config={"no_such_field": 1}).start()


def test_missing_specs_warn_and_skip(tmp_path: Path) -> None:
    validators = SpecValidators(tmp_path)
    ref = body_schema_ref("sendgrid_mc_contacts_v3.json", "/v3/marketing/contacts", "put")
    with pytest.warns(RuntimeWarning, match="HEADWATER_SPECS_DIR"):
        assert validators.validate(ref, {"contacts": "not even a list"}) == []


def test_spec_load_is_fast(specs_available: Path) -> None:
    validators = SpecValidators(specs_available)
    path = "/2010-04-01/Accounts/{AccountSid}/Messages.json"
    ref = body_schema_ref("twilio_api_v2010.json", path, "post",
                          "application/x-www-form-urlencoded")
    started = time.perf_counter()
    assert validators.validate(ref, {"To": "+15551234567", "ValidityPeriod": "x"})
    assert time.perf_counter() - started < 2.0  # measured ~0.05 s on the reference machine
