"""One asset per declared sync, downstream of its audience; it runs the activations engine.

The asset is named after the table it produces, `headwater_state.sync_state__<sync>` (what the
destination holds now). It reads the audience from the published snapshot, never from the
warehouse file, so a sync runs while `dbt build` holds the warehouse (the writer lock).
"""


from collections.abc import Sequence
from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)
from dagster_dbt import get_asset_key_for_model

from activations.config import SyncSpec, load_syncs
from activations.diff import ChangeLog
from activations.engine import SyncResult, run_sync
from headwater.activity import activity_dir
from journeys.runtime import open_cap_ledger
from orchestration.resources import HeadwaterResource, Locations, reader_connection

SYNC_GROUP = "syncs"
DELIVERED_CHECK = "all_records_delivered"
# A sync run waits this long for another sync run to release the state file.
STATE_WAIT_SECONDS = 600.0


def sync_asset_key(sync_name: str) -> AssetKey:
    return AssetKey(["headwater_state", f"sync_state__{sync_name}"])


def declared_syncs(locations: Locations) -> list[SyncSpec]:
    """The syncs of syncs.yml; none when the file does not exist yet."""
    if not locations.syncs_file.exists():
        return []
    return load_syncs(locations.syncs_file)


def execute_sync(locations: Locations, spec: SyncSpec) -> tuple[SyncResult, int]:
    """Run one sync on the published audience; the only place Dagster calls the engine.

    Returns the engine's result and the publish seq it read.
    """
    caps = open_cap_ledger(locations.settings)
    try:
        with reader_connection(locations, state_wait_seconds=STATE_WAIT_SECONDS) as (
            con, manifest,
        ):
            result = run_sync(con, spec, lock_dir=locations.settings.duckdb_path.parent,
                              activity_dir=activity_dir(locations.settings), caps=caps,
                              change_log=ChangeLog(manifest, locations.published_dir))
            return result, manifest.seq
    finally:
        caps.close()


def sync_metadata(spec: SyncSpec, result: SyncResult, seq: int) -> dict[str, Any]:
    planned = result.planned
    return {
        "destination": spec.destination.kind,
        "mode": spec.mode.value,
        "audience": spec.audience,
        "added": planned.get("add", 0),
        "changed": planned.get("update", 0),
        "removed": planned.get("remove", 0),
        "sent": planned.get("send", 0),
        "resumed": result.resumed,
        "delivered": result.delivered,
        "failed": result.rejected,
        "dead_lettered": result.dead,
        "pending": result.pending,
        "requests": result.requests,
        "duration_seconds": round(result.seconds, 3),
        "snapshot_seq": seq,
        "engine_runs": MetadataValue.json(result.run_ids),
    }


def build_sync_asset(spec: SyncSpec, dbt_assets: Sequence[AssetsDefinition]) -> AssetsDefinition:
    key = sync_asset_key(spec.name)

    @asset(
        key=key,
        deps=[get_asset_key_for_model(dbt_assets, spec.audience.split(".")[-1])],
        group_name=SYNC_GROUP,
        kinds={spec.destination.kind},
        description=(
            f"Sync `{spec.name}`: {spec.mode.value} of {spec.audience} to "
            f"{spec.destination.kind}. Produces headwater_state.sync_state__{spec.name}, "
            "what the destination holds now."
        ),
        check_specs=[AssetCheckSpec(DELIVERED_CHECK, asset=key)],
        tags={"headwater/sync": spec.name},
        # Two runs of one sync would only wait on each other's lock.
        pool=f"headwater_sync_{spec.name}",
    )
    def _sync(context: AssetExecutionContext, headwater: HeadwaterResource) -> MaterializeResult:
        result, seq = execute_sync(headwater.locations(), spec)
        metadata = sync_metadata(spec, result, seq)
        if result.stopped:
            # The destination stopped answering: fail the run (alerts fire) but keep the
            # counts; undelivered intents stay in the outbox for the next run.
            raise Failure(
                description=f"sync {spec.name} stopped: {result.stopped}", metadata=metadata
            )
        context.log.info(f"sync {spec.name}: {metadata}")
        return MaterializeResult(
            metadata=metadata,
            check_results=[
                AssetCheckResult(
                    check_name=DELIVERED_CHECK,
                    passed=result.ok,
                    severity=AssetCheckSeverity.WARN,
                    metadata={
                        "failed": result.rejected,
                        "dead_lettered": result.dead,
                        "pending": result.pending,
                    },
                    description=None
                    if result.ok
                    else "some records were rejected or are pending; they retry next run "
                    "(dead letters need `headwater sync --replay`)",
                )
            ],
        )

    return _sync


def build_sync_assets(
    specs: Sequence[SyncSpec], dbt_assets: Sequence[AssetsDefinition]
) -> list[AssetsDefinition]:
    return [build_sync_asset(spec, dbt_assets) for spec in specs]
