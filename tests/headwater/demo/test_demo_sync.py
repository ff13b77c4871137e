"""`headwater demo` syncs the reference audiences (dbt_project/syncs.yml) to local stand-ins:
each stand-in ends up holding exactly the consented members of its sync's audience."""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from activations.config import SyncSpec, load_syncs
from activations.identifiers import google_hashed_email, google_hashed_phone, meta_hash
from headwater.commands.demo import demo
from headwater.config import Settings
from headwater.demo.standins import holdings
from headwater.snapshots import reader_connection

REPO = Path(__file__).resolve().parents[3]
CONSENT = {"email": "email_consent", "sms": "sms_consent", "ads": "ads_consent"}


def _members(settings: Settings, audience: str, channel: str, columns: list[str]
             ) -> list[tuple[Any, ...]]:
    """Consented members of an audience, read from the published snapshot the syncs read."""
    with reader_connection(settings) as (con, _manifest):
        return con.execute(
            f"select {', '.join(columns)} from {audience} where {CONSENT[channel]} "
            f"and {' and '.join(c + ' is not null' for c in columns)}"
        ).fetchall()


def _expected(spec: SyncSpec, settings: Settings) -> set[str]:
    """What the stand-in should hold for a sync, in the form it stores it."""
    kind, audience = spec.destination.kind, spec.audience
    if kind == "sendgrid":
        return {r[0] for r in _members(settings, audience, "email", ["email"])}
    if kind == "twilio":
        return {r[0] for r in _members(settings, audience, "sms", ["phone"])}
    if kind == "meta":
        return {meta_hash("EMAIL", r[0]) for r in _members(settings, audience, "ads", ["email"])}
    if kind == "google_ads":
        # every member by hashed email, plus the hashed phone of those who have one
        emails = {str(google_hashed_email(r[0]))
                  for r in _members(settings, audience, "ads", ["email"])}
        with reader_connection(settings) as (con, _):
            phones = {str(google_hashed_phone(r[0], "US")) for r in con.execute(
                f"select phone from {audience} where ads_consent and email is not null "
                "and phone is not null").fetchall()}
        return emails | phones
    # braze and webhook: the profile ids of email-consented members with the sync's identifiers
    columns = list(dict.fromkeys(["profile_id", *spec.identifiers.values()]))
    return {r[0] for r in _members(settings, audience, "email", columns)}


@pytest.mark.slow
def test_demo_syncs_reference_audiences_to_standins(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # Hermetic: a HEADWATER_* variable another test left in this process (a published folder,
    # an activity folder) would point the demo or the checks below at its files.
    for name in [n for n in os.environ if n.startswith("HEADWATER_")]:
        monkeypatch.delenv(name)
    db = tmp_path / "warehouse" / "headwater.duckdb"
    env = {"HEADWATER_DUCKDB_PATH": str(db), "HEADWATER_TARGET": None,
           "HEADWATER_PUBLISHED_DIR": None, "HEADWATER_STATE_PATH": None,
           "HEADWATER_SYNCS_FILE": None, "COLUMNS": "220"}
    out = CliRunner().invoke(
        demo, ["--customers", "300", "--seed", "7", "--as-of", "2026-06-01T12:00:00"], env=env)
    assert out.exit_code == 0, f"{out.output[-4000:]}\n{out.exception!r}"
    assert "Syncs to local stand-ins" in out.output

    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)})
    specs = load_syncs(REPO / "dbt_project" / "syncs.yml")
    assert {s.destination.kind for s in specs} >= {"sendgrid", "webhook", "twilio", "meta",
                                                    "google_ads", "braze"}
    checked = 0
    for spec in specs:
        assert spec.name in out.output
        state = json.loads((db.parent / "standins" / f"{spec.destination.kind}.json").read_text())
        expected = _expected(spec, settings)
        held = holdings(spec, state)
        if spec.destination.kind == "meta":
            # A multi-key schema stores each row as its hashes joined by "|" in schema order;
            # the reference sync's schema starts with EMAIL.
            assert spec.destination.options["schema"][0] == "EMAIL"
            assert len(held) == len(expected), spec.name
            held = {row.split("|")[0] for row in held}
        assert held == expected, spec.name
        checked += bool(expected)
    # the cart journeys (5 syncs) always have members in a 300-customer world
    assert checked >= 5

    # The demo ends by writing the report: the syncs' deliveries reached the activity feed, the
    # measurement models and the report's chart.
    from headwater.measurement.figures import load_figures
    from journeys.config import load_journeys

    assert "Report written to" in out.output
    html = (db.parent / "reports" / "headwater-report.html").read_text()
    figures = load_figures(settings)
    flows = {r["flow"] for r in figures.flows}
    journey_flows = {f"{j.name}.{st.name}" for j in load_journeys(
        Path(__file__).parents[3] / "dbt_project" / "journeys.yml").journeys for st in j.steps}
    assert flows and flows <= {s.name for s in specs} | journey_flows
    # The journey replay over the world's last two weeks sent cart-abandonment emails.
    assert "cart_abandonment.email" in flows
    assert "Journeys, replayed" in out.output
    for flow in flows:
        assert f'data-series="{flow}"' in html
    assert figures.totals()["sends"] > 0

    _check_recoveries(db)


def _check_recoveries(db: Path) -> None:
    """The checkouts the replay's customers made in answer to messages (demo/response.py)."""
    import sqlite3

    import duckdb

    from headwater.demo.response import Responder, ResponseModel

    con = duckdb.connect(str(db))
    state = sqlite3.connect(db.parent / "journey_state.sqlite",
                            detect_types=sqlite3.PARSE_DECLTYPES)
    try:
        recoveries = con.execute("""
            select json_extract_string(e.properties, '$.cart_id'), e."timestamp", a.flow,
                a.sent_at
            from raw.events e
            left join attribution_orders a
                on a.order_id = json_extract_string(e.properties, '$.order_id')
            where e.message_id like 'recovery-%'""").fetchall()
        # Seed 7 at this as_of answers 3 of its cart messages (a fixed world, fixed draws).
        assert len(recoveries) >= 1
        for cart_id, at, flow, sent_at in recoveries:
            # billed to the profile and earned by the message before it...
            assert flow is not None and flow.startswith("cart_abandonment."), cart_id
            assert sent_at < at
            # ...which ended the journey there: no message of that cart went out after it.
            status, reason, holdout, instance = state.execute(
                "select status, end_reason, holdout, instance_id from instances "
                "where entry_key = ?", [cart_id]).fetchone()
            assert (status, reason, holdout) == ("exited", "Order Completed", 0)
            assert state.execute(
                "select count(*) from outbox o join deliveries d using (idempotency_key) "
                "where o.instance_id = ? and o.action = 'send' and d.attempted_at > ?",
                [instance, at]).fetchone() == (0,)

        # Whatever the rate, a held-out customer never answers (they got nothing) and no cart
        # is checked out twice.
        everyone = Responder(state, con, {"cart_abandonment"}, seed=7,
                             model=ResponseModel(recovery={"email": 1.0, "sms": 1.0}))
        assert everyone.respond(until=datetime(2100, 1, 1)) > 0
        assert con.execute("""
            select count(*) from (
                select json_extract_string(properties, '$.cart_id') as cart_id
                from raw.events where event = 'Order Completed'
                group by all having count(distinct message_id) > 1)""").fetchone() == (0,)
        answered = {r[0] for r in con.execute(
            "select json_extract_string(properties, '$.cart_id') from raw.events "
            "where message_id like 'recovery-%'").fetchall()}
        held_out = {r[0] for r in state.execute(
            "select entry_key from instances where holdout").fetchall()}
        assert held_out and not answered & held_out
    finally:
        state.close()
        con.close()
