"""The code location: dbt models, tests as checks, sync assets downstream of audiences."""

from __future__ import annotations

from dagster import AssetKey
from orch_world import World

from headwater import snapshots
from orchestration.syncs import sync_asset_key


def test_definitions_hold_models_checks_syncs_sensors(world: World) -> None:
    graph = world.defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    for model in ("stg_events", "identity_map", "customer_profiles", "audience_loyalty_winback"):
        assert model in keys
    # dbt tests are asset checks on their models
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    assert any(a == "stg_events" and n.startswith("unique_stg_events_message_id")
               for a, n in checks)
    assert ("raw/events", "landing_freshness") in checks
    # one sync asset per declared sync, downstream of its audience
    for sync, audience in (
        ("winback_hook", "audience_loyalty_winback"),
        ("cart_email_hook", "audience_cart_abandonment_email"),
    ):
        node = graph.get(sync_asset_key(sync))
        assert AssetKey(audience) in node.parent_keys
        assert world.defs.get_sensor_def(f"audience_sensor__{sync}") is not None
    schedules = {s.name for s in world.defs.schedules}
    assert schedules >= {"dbt_build_schedule", "raw_freshness_schedule"}


def test_build_materializes_models_runs_tests_and_publishes(built: World) -> None:
    instance = built.instance
    assert instance.get_latest_materialization_event(AssetKey("customer_profiles")) is not None
    evaluation = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [c for c in built.defs.resolve_asset_graph().asset_check_keys
         if c.asset_key == AssetKey("stg_events")]
    )
    assert evaluation and all(e is not None for e in evaluation.values())
    manifest = snapshots.read_manifest(built.warehouse.parent / "published")
    assert manifest is not None
    assert {"customer_profiles", "audience_loyalty_winback"} <= set(manifest.models)
    con_rows = manifest.models["customer_profiles"].rows
    import duckdb

    with duckdb.connect(str(built.warehouse), read_only=True) as con:
        assert con.execute("select count(*) from customer_profiles").fetchone() == (con_rows,)
