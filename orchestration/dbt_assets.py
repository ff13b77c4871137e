"""dbt models as Dagster assets (tests as asset checks), published after every good build."""


import os
import shutil
import sys
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetsDefinition, ScheduleDefinition
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    DbtProject,
    build_schedule_from_dbt_selection,
    dbt_assets,
)

from headwater import snapshots
from headwater.dbt import dbt_env
from orchestration.resources import HeadwaterResource, Locations

# Inputs of `dbt parse`: when any is newer than the manifest, the manifest is rebuilt.
_PROJECT_INPUTS = ("models", "macros", "seeds", "tests", "snapshots", "analyses")
_PROJECT_FILES = ("dbt_project.yml", "selectors.yml", "profiles.yml")
BUILD_SCHEDULE_CRON_ENV = "HEADWATER_BUILD_CRON"


def dbt_project(locations: Locations) -> DbtProject:
    """The repository's dbt project with artifacts in the code location's own work dir."""
    return DbtProject(
        project_dir=locations.settings.dbt_project_dir,
        profiles_dir=locations.settings.dbt_project_dir,
        target=locations.settings.target,
        target_path=locations.dbt_target_dir,
    )


def ensure_manifest(project: DbtProject, locations: Locations) -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project's files.

    dagster-dbt's `prepare_if_dev` only parses under `dagster dev`; the code location is also
    loaded by tests and by `dagster` run workers, which need a current manifest too.
    """
    manifest = project.manifest_path
    if manifest.exists() and manifest.stat().st_mtime >= _newest_input(project.project_dir):
        return manifest
    _ensure_dbt_on_path()
    os.environ.update(dbt_env(locations.settings))
    locations.work_dir.mkdir(parents=True, exist_ok=True)
    DbtCliResource(
        project_dir=project,
        global_config_flags=["--log-path", str(locations.work_dir / "logs")],
    ).cli(["parse", "--quiet"], target_path=project.target_path).wait()
    return manifest


def _newest_input(project_dir: Path) -> float:
    newest = 0.0
    for name in _PROJECT_FILES:
        path = project_dir / name
        if path.exists():
            newest = max(newest, path.stat().st_mtime)
    for folder in _PROJECT_INPUTS:
        root = project_dir / folder
        if root.is_dir():
            for path in root.rglob("*"):
                if path.suffix in {".sql", ".yml", ".yaml", ".csv", ".py"}:
                    newest = max(newest, path.stat().st_mtime)
    return newest


def _ensure_dbt_on_path() -> None:
    # DbtCliResource runs the `dbt` executable; it sits next to this interpreter in a venv that
    # is not activated (tests, `headwater ui` started by its full path).
    if shutil.which("dbt") is None:
        bin_dir = str(Path(sys.executable).parent)
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")


class HeadwaterDbtTranslator(DagsterDbtTranslator):
    """Groups follow the project's folders (staging, identity, profiles, segments, audiences)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props.get("resource_type") == "source":
            return "raw"
        fqn = dbt_resource_props.get("fqn") or []
        # fqn: [project, folder, (subfolder...), model]
        if len(fqn) >= 4 and fqn[1:3] == ["marts", "measurement"]:
            # Measurement reads the activity feed, not customer data: a group of its own keeps
            # the marts graph readable.
            return "measurement"
        if len(fqn) >= 3:
            return str(fqn[1])
        return "dbt"


def build_dbt_assets(locations: Locations) -> tuple[AssetsDefinition, DbtProject]:
    project = dbt_project(locations)
    ensure_manifest(project, locations)
    translator = HeadwaterDbtTranslator(
        settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)
    )

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        dagster_dbt_translator=translator,
        name="headwater_dbt_models",
    )
    def headwater_dbt_models(
        context: AssetExecutionContext, dbt: DbtCliResource, headwater: HeadwaterResource
    ) -> Iterator[Any]:
        """`dbt build` of the selected models, then publish the snapshots readers use."""
        locs = headwater.locations()
        os.environ.update(dbt_env(locs.settings))
        run_dir = locs.work_dir / "runs" / f"{context.run.run_id[:8]}-{uuid.uuid4().hex[:6]}"
        invocation = dbt.cli(["build"], context=context, target_path=run_dir)
        # stream() raises when a model or test fails: a failed build publishes nothing and
        # readers keep the last good snapshot.
        yield from invocation.stream()
        manifest = snapshots.publish(locs.settings, build_id=context.run.run_id)
        context.log.info(f"published snapshots: {snapshots.describe(manifest)}")
        shutil.rmtree(run_dir, ignore_errors=True)

    return headwater_dbt_models, project


def dbt_resource(project: DbtProject, locations: Locations) -> DbtCliResource:
    _ensure_dbt_on_path()
    return DbtCliResource(
        project_dir=project,
        global_config_flags=["--log-path", str(locations.work_dir / "logs")],
    )


def build_schedule(assets: AssetsDefinition) -> ScheduleDefinition:
    """The dbt build on a cron (HEADWATER_BUILD_CRON, default hourly)."""
    return build_schedule_from_dbt_selection(
        [assets],
        job_name="dbt_build",
        cron_schedule=os.environ.get(BUILD_SCHEDULE_CRON_ENV, "0 * * * *"),
        dbt_select="fqn:*",
        schedule_name="dbt_build_schedule",
    )


__all__ = ["build_dbt_assets", "build_schedule", "dbt_project", "dbt_resource"]
