"""Frequency caps shared by journeys and syncs: one SQLite ledger, reserved per message key."""

from __future__ import annotations

import multiprocessing
from datetime import datetime, timedelta
from pathlib import Path

from synctools import hook_sync, make_audience, member

from activations.caps import CapLedger, FrequencyCap, cap_subject
from activations.destinations.base import Channel
from activations.engine import run_sync

T = datetime(2026, 11, 30, 12, 0)
EMAIL_1_PER_DAY = [FrequencyCap(channel=Channel.EMAIL, max=1, per="24h")]


def test_window_key_and_uncapped_channel(tmp_path: Path) -> None:
    ledger = CapLedger(tmp_path / "caps.sqlite", EMAIL_1_PER_DAY)
    assert ledger.reserve("profile:p1", "email", T, "k1", "journey:x")
    assert ledger.reserve("profile:p1", "email", T, "k1", "journey:x")  # same message again
    assert not ledger.reserve("profile:p1", "email", T + timedelta(hours=23), "k2", "sync:y")
    assert ledger.reserve("profile:p1", "email", T + timedelta(hours=24, seconds=1), "k3", "s")
    assert ledger.reserve("profile:p2", "email", T, "k4", "sync:y")  # someone else
    assert ledger.reserve("profile:p1", "sms", T, "k5", "sync:y")  # no sms cap declared


def _reserve_many(path: str, start: int, out: multiprocessing.Queue) -> None:
    ledger = CapLedger(Path(path), [FrequencyCap(channel=Channel.SMS, max=5, per="1h")])
    out.put(sum(ledger.reserve("profile:p", "sms", T, f"k{start + i}", "proc")
                for i in range(20)))


def test_cap_holds_across_processes(tmp_path: Path) -> None:
    """Two processes racing for one profile's sms budget get five between them."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    procs = [multiprocessing.Process(target=_reserve_many,
                                     args=(str(tmp_path / "caps.sqlite"), n * 100, out))
             for n in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert out.get(timeout=5) + out.get(timeout=5) == 5


def test_append_sync_respects_a_cap_a_journey_used(warehouse, receiver, hook_env, tmp_path):
    ledger = CapLedger(tmp_path / "caps.sqlite", EMAIL_1_PER_DAY)
    # A journey emailed p1 a moment ago.
    assert ledger.reserve(cap_subject("p1"), "email", datetime.utcnow(), "journey-key",
                          "journey:cart_abandonment")
    make_audience(warehouse, [member(0), member(1)])
    spec = hook_sync(mode="append", max_attempts=2)
    result = run_sync(warehouse, spec, lock_dir=tmp_path, environ=hook_env, caps=ledger)
    assert result.delivered == 1 and result.rejected == 1
    assert set(receiver.members) == {"p0"}
    error = warehouse.execute(
        "select last_error from headwater_state.outbox where profile_id = 'p1'"
    ).fetchone()[0]
    assert "frequency cap" in error
    # Mirror syncs (list membership, not messages) are never capped.
    mirror = hook_sync(name="hook_mirror", mode="mirror")
    assert run_sync(warehouse, mirror, lock_dir=tmp_path, environ=hook_env,
                    caps=ledger).delivered == 2
