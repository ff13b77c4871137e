"""Helpers for journey tests: a raw.events table to land messages in, a published profile
snapshot made by the real `snapshots.publish`, in-process stand-ins, and a FastPath over them
with a ManualClock (hours of journey in milliseconds)."""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import yaml

from activations.caps import CapLedger
from activations.standins.meta import MetaStandin
from activations.standins.twilio import TwilioStandin
from activations.standins.webhook import WebhookStandin
from headwater import snapshots
from headwater.config import Settings
from headwater.warehouse import create_raw_tables
from journeys.clock import ManualClock
from journeys.config import parse_journeys
from journeys.engine import FastPath
from journeys.profiles import ProfileLookup
from journeys.sources import TableSource
from journeys.state import CATALOG, open_state

T0 = datetime(2026, 11, 30, 12, 0, 0)
PROFILE_COLUMNS = {
    "profile_id": "varchar", "email": "varchar", "phone": "varchar", "first_name": "varchar",
    "order_count": "integer", "last_order_at": "timestamp", "loyalty_tier": "varchar",
    "qualified_offer": "varchar", "qualified_offer_discount_percent": "double",
    "email_consent": "boolean", "sms_consent": "boolean", "ads_consent": "boolean",
}


def journeys_yaml(webhook: str, twilio: str, meta: str, *, holdout: float = 0,
                  caps: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The reference cart-abandonment and welcome journeys, pointed at local stand-ins."""
    text = (Path(__file__).parents[2] / "dbt_project" / "journeys.yml").read_text()
    data = yaml.safe_load(text)
    data["frequency_caps"] = list(caps)
    for journey in data["journeys"]:
        journey["holdout_percent"] = holdout
        for step in journey["steps"]:
            action = step.get("send") or step.get("audience")
            kind = action["destination"]["kind"]
            action["destination"]["base_url"] = {"webhook": webhook, "twilio": twilio,
                                                 "meta": meta}[kind]
    return data


@dataclass
class Harness:
    tmp: Path
    clock: ManualClock
    raw: duckdb.DuckDBPyConnection
    webhook: WebhookStandin
    twilio: TwilioStandin
    meta: MetaStandin
    environ: dict[str, str]
    config_data: dict[str, Any]
    fast: FastPath | None = None
    _n: int = 0
    published: Path = field(init=False)

    def __post_init__(self) -> None:
        self.published = self.tmp / "published"

    def track(self, event: str, *, at: datetime | None = None, user_id: str | None = None,
              anonymous_id: str | None = None, traits: Mapping[str, Any] | None = None,
              received_at: datetime | None = None, message_id: str | None = None,
              **properties: Any) -> str:
        at = at or self.clock.now()
        self._n += 1
        mid = message_id or f"m{self._n}-{uuid.uuid4().hex[:6]}"
        self.raw.execute(
            "insert into raw.events values (?, 'track', ?, ?, ?, null, ?, ?, ?, ?, ?)",
            [mid, event, user_id, anonymous_id, json.dumps(dict(traits or {})),
             json.dumps(properties), json.dumps({"traits": dict(traits or {})}), at,
             received_at or at],
        )
        return mid

    def publish(self, profiles: Sequence[Mapping[str, Any]],
                identities: Sequence[tuple[str, str, str]],
                audiences: Mapping[str, Sequence[str]] | None = None) -> None:
        """Publish customer_profiles, identity_map and audiences (name -> member profile ids,
        rows copied from the profiles) through the real publisher."""
        path = self.tmp / "warehouse.duckdb"
        con = duckdb.connect(str(path))
        try:
            cols = ", ".join(f"{c} {t}" for c, t in PROFILE_COLUMNS.items())
            con.execute(f"create or replace table customer_profiles ({cols})")
            for p in profiles:
                row = {c: p.get(c) for c in PROFILE_COLUMNS}
                con.execute(f"insert into customer_profiles values "
                            f"({', '.join('?' * len(row))})", list(row.values()))
            con.execute("create or replace table identity_map (identifier_type varchar, "
                        "identifier_value varchar, profile_id varchar)")
            if identities:
                con.executemany("insert into identity_map values (?, ?, ?)", list(identities))
            for name, members in (audiences or {}).items():
                con.execute(f"create or replace table {name} as select * from "
                            "customer_profiles where profile_id in (select unnest(?))",
                            [list(members)])
            settings = Settings(duckdb_path=path, target="duckdb",
                                dbt_project_dir=Path("dbt_project"))
            with _env("HEADWATER_PUBLISHED_DIR", str(self.published)):
                snapshots.publish(settings, con=con, models=[
                    "customer_profiles", "identity_map", *(audiences or {})])
        finally:
            con.close()

    def open(self, *, background_dispatch: bool = False, **overrides: Any) -> FastPath:
        """(Re)open the fast path on the same state file, as a restarted process would;
        `overrides` replace top-level keys of journeys.yml. `background_dispatch` sends on a
        thread per step, as the long-lived worker does."""
        if self.fast is not None:
            self.fast.close()
            self.fast.con.close()
        data = {**self.config_data, **overrides}
        config = parse_journeys(data)
        con = open_state(self.tmp / "journey_state.sqlite")
        ledger = CapLedger(self.tmp / "caps.sqlite", config.frequency_caps)
        self.fast = FastPath(con, config, TableSource(self.raw), ProfileLookup(self.published),
                             self.clock, ledger=ledger, activity_dir=self.tmp / "activity",
                             environ=self.environ, background_dispatch=background_dispatch)
        return self.fast

    def at(self, delta: timedelta) -> Any:
        """Move the clock to T0 + delta and step until idle."""
        self.clock.set(T0 + delta)
        assert self.fast is not None
        return self.fast.run_until_idle()

    def journal(self, journey: str | None = None) -> list[tuple[Any, ...]]:
        assert self.fast is not None
        return self.fast.con.execute(
            f"select instance_id, event, step, reason from {CATALOG}.journal "
            "where ? is null or journey = ? order by occurred_at, event_id",
            [journey, journey],
        ).fetchall()

    def sms(self) -> list[dict[str, Any]]:
        return self.twilio.messages()

    def emails(self, path: str) -> list[dict[str, Any]]:
        """Every record the webhook stand-in received on `path` (requests carry batches)."""
        return [r for m in self.webhook.messages() if m.path == path
                for r in m.body["records"]]


@contextlib.contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    import os

    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def harness(tmp: Path, **yaml_options: Any) -> Iterator[Harness]:
    with WebhookStandin() as webhook, TwilioStandin() as twilio, MetaStandin() as meta:
        raw = duckdb.connect()
        create_raw_tables(raw)
        environ = {
            "HEADWATER_WEBHOOK_SECRET": webhook.config.secret,
            "TWILIO_ACCOUNT_SID": twilio.config.account_sid,
            "TWILIO_AUTH_TOKEN": twilio.config.auth_token,
            "META_ACCESS_TOKEN": meta.config.access_token,
        }
        h = Harness(tmp, ManualClock(T0), raw, webhook, twilio, meta, environ,
                    journeys_yaml(webhook.url, twilio.url, meta.url, **yaml_options))
        try:
            yield h
        finally:
            if h.fast is not None:
                h.fast.close()
                h.fast.con.close()
            raw.close()
