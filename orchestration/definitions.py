"""The code location's one `Definitions`: `dagster dev -m orchestration.definitions`.

Everything is configured from the environment (orchestration/resources.py): the same variables
as the `headwater` CLI, plus HEADWATER_STATE_PATH, HEADWATER_SYNCS_FILE,
HEADWATER_ALERT_WEBHOOK_URL, HEADWATER_BUILD_CRON and HEADWATER_SENSORS (`running` starts the
audience sensors by default; they are stopped otherwise, since they send real messages).
"""

from __future__ import annotations

import os

from dagster import DefaultSensorStatus, Definitions

from journeys.config import load_journeys
from journeys.runtime import FastPathLocations
from orchestration.dbt_assets import build_dbt_assets, build_schedule, dbt_resource
from orchestration.fastpath import build_fastpath_sensor, journey_asset_specs
from orchestration.maintenance import landing_compaction_job, landing_compaction_schedule
from orchestration.measurement import build_measurement_report, measurement_checks
from orchestration.observability import (
    alert_on_check_failure,
    alert_on_run_failure,
    freshness_job,
    freshness_schedule,
    raw_landing_freshness,
    raw_source_specs,
)
from orchestration.resources import ALERT_WEBHOOK_ENV, AlertWebhook, HeadwaterResource, Locations
from orchestration.sensors import build_audience_sensors
from orchestration.syncs import build_sync_assets, declared_syncs


def build_definitions(locations: Locations | None = None) -> Definitions:
    locations = locations or Locations.from_env()
    dbt_models, project = build_dbt_assets(locations)
    specs = declared_syncs(locations)
    status = (
        DefaultSensorStatus.RUNNING
        if os.environ.get("HEADWATER_SENSORS", "").lower() == "running"
        else DefaultSensorStatus.STOPPED
    )
    fast = FastPathLocations.from_settings(locations.settings)
    journeys = load_journeys(fast.journeys_file)
    return Definitions(
        assets=[
            *raw_source_specs(),
            dbt_models,
            *build_sync_assets(specs, [dbt_models]),
            *journey_asset_specs(journeys),
            build_measurement_report([dbt_models]),
        ],
        asset_checks=[raw_landing_freshness, measurement_checks],
        jobs=[freshness_job, landing_compaction_job],
        schedules=[build_schedule(dbt_models), freshness_schedule, landing_compaction_schedule],
        sensors=[
            *build_audience_sensors(specs, status),
            build_fastpath_sensor(fast, journeys, status),
            alert_on_run_failure,
            alert_on_check_failure,
        ],
        resources={
            "dbt": dbt_resource(project, locations),
            "headwater": HeadwaterResource(
                duckdb_path=str(locations.settings.duckdb_path),
                state_path=str(locations.state_path),
                syncs_file=str(locations.syncs_file),
                published_dir=str(locations.published_dir),
            ),
            "alerts": AlertWebhook(url=os.environ.get(ALERT_WEBHOOK_ENV, "")),
        },
    )


defs = build_definitions()
