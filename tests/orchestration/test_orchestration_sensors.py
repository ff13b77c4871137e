"""Audience sensors evaluated with build_sensor_context against real published builds.

Covers: the first tick (no cursor) compares the whole audience with the delivered state; later
ticks read only the change log; a restarted sensor (old cursor) neither misses changes nor
repeats a run (same run key, or no difference once delivered).
"""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pytest
from dagster import AssetKey, AssetSelection, SensorResult, build_sensor_context, materialize
from orch_world import World

from headwater import snapshots
from orchestration.resources import Locations, reader_connection
from orchestration.sensors import judge
from orchestration.syncs import declared_syncs, sync_asset_key

SYNC = "winback_hook"


def tick(world: World, sync: str, cursor: str | None) -> SensorResult:
    sensor = world.defs.get_sensor_def(f"audience_sensor__{sync}")
    context = build_sensor_context(
        instance=world.instance, cursor=cursor, resources=world.resources(),
        definitions=world.defs,
    )
    result = sensor(context)
    assert isinstance(result, SensorResult)
    return result


def run_sync_asset(world: World, sync: str) -> dict[str, object]:
    result = materialize(
        [world.defs.get_assets_def(sync_asset_key(sync))],
        resources=world.resources(),
        instance=world.instance,
    )
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


def members(world: World, audience: str) -> list[tuple[str, str]]:
    """(profile_id, email) of members the email gate lets through, from the snapshot."""
    locations = Locations.from_env()
    rel = snapshots.relation(audience, locations.settings)
    with duckdb.connect() as con:
        return con.execute(
            f"select profile_id, email from {rel} where email_consent and email is not null "
            "order by profile_id"
        ).fetchall()


def test_sensor_requests_exactly_when_audience_differs_and_survives_restarts(
    built: World,
) -> None:
    world = built
    eligible = members(world, "audience_loyalty_winback")
    assert len(eligible) >= 3, "the generated world should put a few gold members in win-back"

    first = tick(world, SYNC, None)  # no cursor: whole audience vs empty state
    assert [r.run_key for r in first.run_requests] == [f"{SYNC}:1"]
    assert first.run_requests[0].asset_selection == [sync_asset_key(SYNC)]
    assert json.loads(first.cursor) == {"seq": 1}

    metadata = run_sync_asset(world, SYNC)
    assert metadata["added"] == len(eligible)
    assert metadata["delivered"] == len(eligible)
    assert metadata["destination"] == "webhook"
    sent = {r["profile_id"] for b in world.receiver.bodies("/winback") for r in b["records"]}
    assert sent == {p for p, _ in eligible}

    # Nothing published since: skip without touching anything.
    again = tick(world, SYNC, first.cursor)
    assert not again.run_requests and again.skip_reason
    # A sensor that lost its cursor compares everything once, finds the state delivered: no run.
    lost = tick(world, SYNC, None)
    assert not lost.run_requests and json.loads(lost.cursor) == {"seq": 1}

    # Two members withdraw email consent; rebuild what depends on consent through Dagster.
    leaving = [email for _, email in eligible[:2]]
    with duckdb.connect(str(world.warehouse)) as con:
        for email in leaving:
            con.execute(
                "insert into raw.consent values ('email', ?, 'email', false, ?)",
                [email.upper(), datetime.now()],
            )
    rebuilt = materialize(
        [world.dbt_assets],
        selection=AssetSelection.assets(AssetKey("stg_consent")).downstream(),
        resources=world.resources(),
        instance=world.instance,
    )
    assert rebuilt.success
    manifest = snapshots.read_manifest(world.warehouse.parent / "published")
    assert manifest is not None and manifest.seq == 2

    # The tick judges the change rows only, and finds exactly the two leavers.
    spec = next(s for s in declared_syncs(Locations.from_env()) if s.name == SYNC)
    locations = Locations.from_env()
    with reader_connection(locations, state_read_only=True) as (con, m):
        verdict = judge(con, m, spec, 1, locations.published_dir)
    change = m.models["audience_loyalty_winback"].changes[-1]
    assert not verdict.full and verdict.changed == change.upserts + change.removes
    assert verdict.differing == 2
    assert verdict.changed < m.models["audience_loyalty_winback"].rows

    second = tick(world, SYNC, first.cursor)
    assert [r.run_key for r in second.run_requests] == [f"{SYNC}:2"]
    # Restart before the cursor was committed: the same request, the same run key (Dagster
    # launches a run key once), so nothing is repeated.
    replay = tick(world, SYNC, first.cursor)
    assert [r.run_key for r in replay.run_requests] == [f"{SYNC}:2"]
    assert not tick(world, SYNC, second.cursor).run_requests

    metadata = run_sync_asset(world, SYNC)
    assert metadata["removed"] == 2 and metadata["added"] == 0 and metadata["failed"] == 0
    # After delivery, even a sensor restarted from seq 1 finds nothing left to send.
    assert not tick(world, SYNC, first.cursor).run_requests


def test_sensor_skips_before_anything_is_published(world: World, tmp_path) -> None:
    from orchestration.resources import HeadwaterResource

    sensor = world.defs.get_sensor_def(f"audience_sensor__{SYNC}")
    resources = world.resources()
    resources["headwater"] = HeadwaterResource(
        duckdb_path=str(tmp_path / "none.duckdb"),
        published_dir=str(tmp_path / "published"),
        syncs_file=world.env["HEADWATER_SYNCS_FILE"],
    )
    result = sensor(build_sensor_context(instance=world.instance, resources=resources,
                                         definitions=world.defs))
    assert not result.run_requests
    assert "nothing published" in str(result.skip_reason)


@pytest.mark.parametrize("sync", ["cart_email_hook"])
def test_first_tick_on_other_sync_uses_full_compare(built: World, sync: str) -> None:
    result = tick(built, sync, None)
    has_members = bool(members(built, "audience_cart_abandonment_email"))
    assert bool(result.run_requests) == has_members
