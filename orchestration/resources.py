"""Resources: where the warehouse, the published snapshots and the sync state live.

All of it comes from environment variables (headwater.config.Settings plus the few below), so
the CLI, the Dagster UI, sensors and tests agree on one warehouse without passing paths around.

The writer lock shapes everything here (DESIGN.md): dbt owns the warehouse file during a build,
so nothing in this module opens it. Readers get a private in-memory DuckDB in which every
published model is a view over its Parquet snapshot and the sync state file is ATTACHed as
`headwater_state` (headwater.snapshots.reader_connection); the sync engine's SQL
(`from audience_x`, `headwater_state.outbox`) runs there unchanged.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import requests
from dagster import ConfigurableResource

from headwater import snapshots
from headwater.config import Settings

SYNCS_FILE_ENV = "HEADWATER_SYNCS_FILE"
STATE_PATH_ENV = "HEADWATER_STATE_PATH"
WORK_DIR_ENV = "HEADWATER_DAGSTER_WORK_DIR"
ALERT_WEBHOOK_ENV = "HEADWATER_ALERT_WEBHOOK_URL"


@dataclass(frozen=True)
class Locations:
    """Every path the code location uses, resolved once from the environment."""

    settings: Settings
    # dbt_project/syncs.yml unless HEADWATER_SYNCS_FILE says otherwise.
    syncs_file: Path
    # The sync state database (HEADWATER_STATE_PATH), a DuckDB file next to the warehouse.
    state_path: Path
    # dbt artifacts of the code location (manifest, run targets, logs): never the repository's
    # dbt_project/target, which the CLI and other tools use.
    work_dir: Path
    # Published snapshots (HEADWATER_PUBLISHED_DIR), `published/` next to the warehouse.
    published_dir: Path

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Locations:
        env = os.environ if environ is None else environ
        settings = Settings.from_env(dict(env))
        home = settings.duckdb_path.parent
        return cls(
            settings=settings,
            syncs_file=_path(env.get(SYNCS_FILE_ENV), settings.dbt_project_dir / "syncs.yml"),
            state_path=_path(env.get(STATE_PATH_ENV), home / "headwater_state.duckdb"),
            work_dir=_path(env.get(WORK_DIR_ENV), home / ".headwater" / "dagster-dbt"),
            published_dir=_path(env.get("HEADWATER_PUBLISHED_DIR"), home / "published"),
        )

    @property
    def dbt_target_dir(self) -> Path:
        return self.work_dir / "target"


def _path(value: str | None, default: Path) -> Path:
    return Path(value).expanduser().resolve() if value else default


class HeadwaterResource(ConfigurableResource):
    """Paths to the warehouse, the published snapshots and the sync state.

    Empty fields mean "from the environment" (Locations.from_env), which is how the code
    location is configured; tests may set them explicitly.
    """

    duckdb_path: str = ""
    state_path: str = ""
    syncs_file: str = ""
    published_dir: str = ""

    def locations(self) -> Locations:
        env = dict(os.environ)
        if self.duckdb_path:
            env["HEADWATER_DUCKDB_PATH"] = self.duckdb_path
        if self.state_path:
            env[STATE_PATH_ENV] = self.state_path
        if self.syncs_file:
            env[SYNCS_FILE_ENV] = self.syncs_file
        if self.published_dir:
            env["HEADWATER_PUBLISHED_DIR"] = self.published_dir
        return Locations.from_env(env)


@contextlib.contextmanager
def reader_connection(
    locations: Locations,
    *,
    manifest: snapshots.Manifest | None = None,
    state_read_only: bool = False,
    state_wait_seconds: float = 0.0,
) -> Iterator[tuple[duckdb.DuckDBPyConnection, snapshots.Manifest]]:
    """headwater.snapshots.reader_connection on these locations."""
    with snapshots.reader_connection(
        locations.settings,
        state=locations.state_path,
        folder=locations.published_dir,
        manifest=manifest,
        state_read_only=state_read_only,
        state_wait_seconds=state_wait_seconds,
    ) as pair:
        yield pair


class AlertWebhook(ConfigurableResource):
    """Where failed runs and checks are reported: a URL that accepts a JSON POST.

    Empty (HEADWATER_ALERT_WEBHOOK_URL unset) disables alerts.
    """

    url: str = ""
    timeout_seconds: float = 5.0

    def notify(self, payload: dict[str, Any]) -> bool:
        """POST the payload; False when alerts are off. Raises on HTTP errors so that the
        sensor tick fails visibly (and retries the same events next tick) instead of dropping
        an alert."""
        if not self.url:
            return False
        response = requests.post(self.url, json=payload, timeout=self.timeout_seconds)
        response.raise_for_status()
        return True
