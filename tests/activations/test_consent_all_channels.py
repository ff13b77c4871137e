"""The consent gate on every channel, through the real clients and the vendors' stand-ins: a
profile opted out of email, SMS or ads never reaches SendGrid, Twilio, Meta or Google Ads, not
even on a full resync, and a withdrawal removes a member from the ad audiences at the next run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from synctools import make_audience, member

from activations.config import SyncSpec, parse_syncs
from activations.engine import SyncResult, run_sync
from activations.identifiers import google_hashed_email, meta_hash
from activations.standins.google_ads import GoogleAdsStandin
from activations.standins.meta import MetaStandin
from activations.standins.sendgrid import SendGridStandin
from activations.standins.twilio import TwilioStandin
from headwater.demo.standins import standin_credentials

LIST_ID = "consent-list"
AUDIENCE_ID = "1000000000000007"
CUSTOMER_ID = "1234567890"
USER_LIST = "2000000007"
RETRY = {"total": 2, "backoff_factor": 0.01, "backoff_jitter": 0.01}

# p1 opted out of email, p2 of SMS, p3 of ads; the others consented to everything.
OPTED_OUT = {"email": "p1", "sms": "p2", "ads": "p3"}
PROFILES = [f"p{i}" for i in range(8)]


def _phone(profile: str) -> str:
    return f"+1212200{int(profile[1:]):04d}"


def _email(profile: str) -> str:
    return f"user{profile[1:]}@example.com"


def _specs() -> dict[str, SyncSpec]:
    docs: list[dict[str, Any]] = [
        {"name": "c_sendgrid", "mode": "mirror",
         "destination": {"kind": "sendgrid", "credentials": {"api_key": "C_SG_KEY"},
                         "options": {"list_id": LIST_ID}},
         "identifiers": {"email": "email"}},
        {"name": "c_twilio", "mode": "append",
         "destination": {"kind": "twilio",
                         "credentials": {"account_sid": "C_TW_SID", "auth_token": "C_TW_TOKEN"},
                         "options": {"from": "+15005550006"}},
         "identifiers": {"phone": "phone"},
         "templates": {"body": "{{ first_name }}, your cart is waiting."}},
        {"name": "c_meta", "mode": "mirror",
         "destination": {"kind": "meta", "credentials": {"access_token": "C_META_TOKEN"},
                         "options": {"audience_id": AUDIENCE_ID, "schema": ["EMAIL"]}},
         "identifiers": {"email": "email"}},
        {"name": "c_google", "mode": "mirror",
         "destination": {"kind": "google_ads",
                         "credentials": {"access_token": "C_GA_TOKEN",
                                         "developer_token": "C_GA_DEV"},
                         "options": {"customer_id": CUSTOMER_ID, "user_list_id": USER_LIST}},
         "identifiers": {"email": "email"}},
    ]
    for doc in docs:
        doc.update(audience="audience_test", retry=RETRY, max_attempts=2)
    return {s.name: s for s in parse_syncs({"syncs": docs})}


@pytest.fixture
def standins() -> Iterator[dict[str, Any]]:
    started = {"sendgrid": SendGridStandin(), "twilio": TwilioStandin(), "meta": MetaStandin(),
               "google_ads": GoogleAdsStandin()}
    for s in started.values():
        s.start()
    yield started
    for s in started.values():
        s.stop()


def _env(standins: dict[str, Any]) -> dict[str, str]:
    creds = {kind: standin_credentials(kind) for kind in standins}
    return {
        **{f"HEADWATER_{k.upper()}_BASE_URL": s.url for k, s in standins.items()},
        "C_SG_KEY": creds["sendgrid"]["api_key"],
        "C_TW_SID": creds["twilio"]["account_sid"],
        "C_TW_TOKEN": creds["twilio"]["auth_token"],
        "C_META_TOKEN": creds["meta"]["access_token"],
        "C_GA_TOKEN": creds["google_ads"]["access_token"],
        "C_GA_DEV": creds["google_ads"]["developer_token"],
    }


def _audience(con: duckdb.DuckDBPyConnection) -> None:
    rows = []
    for p in PROFILES:
        rows.append(member(int(p[1:]), email=_email(p), phone=_phone(p),
                           email_consent=p != OPTED_OUT["email"],
                           sms_consent=p != OPTED_OUT["sms"],
                           ads_consent=p != OPTED_OUT["ads"]))
    make_audience(con, rows)


def _held(standins: dict[str, Any]) -> dict[str, set[str]]:
    """What each destination holds, as profile ids (hashes and phones mapped back)."""
    by_email = {_email(p): p for p in PROFILES}
    by_phone = {_phone(p): p for p in PROFILES}
    by_meta = {meta_hash("EMAIL", _email(p)): p for p in PROFILES}
    by_google = {google_hashed_email(_email(p)): p for p in PROFILES}
    return {
        "c_sendgrid": {by_email[e] for e in standins["sendgrid"].members(LIST_ID)},
        "c_twilio": {by_phone[m["to"]] for m in standins["twilio"].messages()},
        "c_meta": {by_meta[h] for h in standins["meta"].members(AUDIENCE_ID)},
        "c_google": {by_google[h] for h in standins["google_ads"].members(
            f"customers/{CUSTOMER_ID}/userLists/{USER_LIST}")},
    }


def _run(con: duckdb.DuckDBPyConnection, spec: SyncSpec, tmp: Path, env: dict[str, str],
         full_resync: bool = False) -> SyncResult:
    result = run_sync(con, spec, lock_dir=tmp, environ=env, full_resync=full_resync)
    assert result.ok, (spec.name, result)
    return result


def test_opted_out_profiles_never_reach_any_channel(
    tmp_path: Path, warehouse: duckdb.DuckDBPyConnection, standins: dict[str, Any],
) -> None:
    env = _env(standins)
    specs = _specs()
    _audience(warehouse)
    everyone = set(PROFILES)
    expected = {
        "c_sendgrid": everyone - {OPTED_OUT["email"]},
        "c_twilio": everyone - {OPTED_OUT["sms"]},
        "c_meta": everyone - {OPTED_OUT["ads"]},
        "c_google": everyone - {OPTED_OUT["ads"]},
    }
    for spec in specs.values():
        _run(warehouse, spec, tmp_path, env)
    assert _held(standins) == expected

    # A full resync sends every member again: the gate still keeps the opted-out ones out.
    # (Append syncs refuse --full-resync; Twilio gets a plain second run instead.)
    before = {k: s.request_count for k, s in standins.items()}
    for name in ("c_sendgrid", "c_meta", "c_google"):
        result = _run(warehouse, specs[name], tmp_path, env, full_resync=True)
        assert sum(result.planned.values()) == len(expected[name]), name
    _run(warehouse, specs["c_twilio"], tmp_path, env)
    assert all(standins[k].request_count > before[k] for k in ("sendgrid", "meta", "google_ads"))
    assert _held(standins) == expected
    # Nobody was texted twice by the second run.
    assert len(standins["twilio"].messages()) == len(expected["c_twilio"])


def test_withdrawal_removes_from_ad_audiences_next_run(
    tmp_path: Path, warehouse: duckdb.DuckDBPyConnection, standins: dict[str, Any],
) -> None:
    env = _env(standins)
    specs = _specs()
    _audience(warehouse)
    for name in ("c_sendgrid", "c_meta", "c_google"):
        _run(warehouse, specs[name], tmp_path, env)
    assert "p4" in _held(standins)["c_meta"] and "p4" in _held(standins)["c_google"]

    # p4 withdraws ads consent, p5 email consent; both stay in the audience table.
    warehouse.execute("update audience_test set ads_consent = false where profile_id = 'p4'")
    warehouse.execute("update audience_test set email_consent = false where profile_id = 'p5'")
    for name in ("c_meta", "c_google", "c_sendgrid"):
        result = _run(warehouse, specs[name], tmp_path, env)
        assert result.planned == {"remove": 1}, (name, result.planned)
    held = _held(standins)
    assert held["c_meta"] == held["c_google"] == set(PROFILES) - {"p3", "p4"}
    assert held["c_sendgrid"] == set(PROFILES) - {"p1", "p5"}

    # Consent granted again: back in at the next run.
    warehouse.execute("update audience_test set ads_consent = true where profile_id = 'p4'")
    for name in ("c_meta", "c_google"):
        _run(warehouse, specs[name], tmp_path, env)
    held = _held(standins)
    assert held["c_meta"] == held["c_google"] == set(PROFILES) - {"p3"}
