"""The SendGrid client through the sync engine, against the SendGrid stand-in on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from activations.config import parse_syncs
from activations.engine import run_sync
from activations.standins import Fault
from activations.standins.sendgrid import SendGridConfig, SendGridStandin

LIST = "0d3a7c2e-4b1f-4f8e-9a55-1a2b3c4d5e6f"


@pytest.fixture
def sg():
    with SendGridStandin(SendGridConfig(pending_polls=1)) as standin:
        yield standin


def _spec(**over):
    doc = {
        "name": "sg", "audience": "aud", "mode": "mirror",
        "destination": {"kind": "sendgrid", "credentials": {"api_key": "SG_KEY"},
                        "options": {"list_id": LIST}},
        "identifiers": {"email": "email"}, "fields": {"first_name": "first_name"},
        "batch_size": 40,
        "retry": {"total": 3, "backoff_factor": 0.01, "backoff_jitter": 0.01},
    }
    doc.update(over)
    return parse_syncs({"syncs": [doc]})[0]


def _audience(con: duckdb.DuckDBPyConnection, n: int, bad: tuple[int, ...] = ()) -> None:
    con.execute("create or replace table aud (profile_id varchar, email varchar, "
                "first_name varchar, email_consent boolean)")
    con.execute(
        "insert into aud select 'p' || i, case when list_contains(?, i) then 'not-an-email' "
        "else 'u' || i || '@example.com' end, 'N' || i, i % 10 <> 9 from range(?) t(i)",
        [list(bad), n],
    )


def _run(con, tmp_path: Path, sg, key: str = SendGridConfig().api_key, **kw):
    env = {"SG_KEY": key, "HEADWATER_SENDGRID_BASE_URL": sg.url}
    return run_sync(con, kw.pop("spec", None) or _spec(), lock_dir=tmp_path, environ=env, **kw)


def test_mirror_adds_consented_then_removes_leavers(sg, tmp_path):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    _audience(con, 100)
    result = _run(con, tmp_path, sg)
    assert result.ok and result.delivered == 90
    assert sg.members(LIST) == {f"u{i}@example.com" for i in range(100) if i % 10 != 9}
    con.execute("update aud set email_consent = false where profile_id in ('p1', 'p2')")
    con.execute("delete from aud where profile_id = 'p3'")
    again = _run(con, tmp_path, sg)
    assert again.planned == {"remove": 3} and again.ok
    assert {"u1@example.com", "u2@example.com", "u3@example.com"}.isdisjoint(sg.members(LIST))
    assert len(sg.members(LIST)) == 87


def test_throttling_is_retried_and_bad_email_is_rejected_alone(sg, tmp_path):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    _audience(con, 30, bad=(4,))
    sg.script(Fault("429", retry_after=0), count=2)
    result = _run(con, tmp_path, sg)
    assert result.delivered == 26 and result.rejected == 1
    err = con.execute("select last_error from headwater_state.outbox").fetchall()
    assert len(err) == 1 and err[0][0]


def test_wrong_api_key_stops_and_keeps_records_pending(sg, tmp_path):
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    _audience(con, 10)
    result = _run(con, tmp_path, sg, key="SG.wrong")
    assert result.stopped and "SendGrid refused the API key" in result.stopped
    assert "SG.wrong" not in result.stopped
    assert result.pending == 9 and result.rejected == 0
    assert _run(con, tmp_path, sg).delivered == 9
