"""Where things are: the repository's dbt project, the warehouse file, the active target.

Every path here can be overridden from the environment, so that the CLI, Dagster, tests and
benchmarks all agree on one warehouse without passing paths around.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
DEFAULT_DUCKDB_PATH = Path("warehouse") / "headwater.duckdb"
# Empty: DuckDB's own default (80% of RAM). Not bounded by default: when the plan was one
# transaction, a first sync of 1M members ran out of memory under 128MB; the chunked plan
# (activations/diff.py) has not been measured under a limit yet.
DEFAULT_SYNC_MEMORY_LIMIT = ""


@dataclass(frozen=True)
class Settings:
    """Resolved settings for one process."""

    # The DuckDB warehouse file (HEADWATER_DUCKDB_PATH); relative paths resolve against the cwd.
    duckdb_path: Path
    # dbt target: `duckdb` (default) or `snowflake` (HEADWATER_TARGET).
    target: str
    # The dbt project folder (HEADWATER_DBT_PROJECT_DIR), normally the repository's dbt_project/.
    dbt_project_dir: Path
    # DuckDB memory budget of the connection syncs and sensors run on (HEADWATER_SYNC_MEMORY_LIMIT).
    sync_memory_limit: str = DEFAULT_SYNC_MEMORY_LIMIT

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            duckdb_path=Path(env.get("HEADWATER_DUCKDB_PATH", str(DEFAULT_DUCKDB_PATH)))
            .expanduser()
            .resolve(),
            target=env.get("HEADWATER_TARGET", "duckdb"),
            dbt_project_dir=Path(env.get("HEADWATER_DBT_PROJECT_DIR", str(DBT_PROJECT_DIR)))
            .expanduser()
            .resolve(),
            sync_memory_limit=env.get("HEADWATER_SYNC_MEMORY_LIMIT", DEFAULT_SYNC_MEMORY_LIMIT),
        )
