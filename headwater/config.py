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
# Bounded by default, because without a limit DuckDB caches every block a sync reads or writes
# up to 80% of RAM and keeps its plan's temp tables in memory, so a first sync's peak memory
# followed the audience: 600 MB at 1M members, about 1 GB at 3M. Under 256MB a first sync's own
# memory (peak RSS less what the process held before) measured 324 MB at 1M and 341 MB at 10M
# (benchmarks/bench_sync.py, `sync_rss_mb`; peak RSS 462 and 480 MB, 1.04x, since the drain
# lets go of cached blocks before every page and runs without vacuum, activations/outbox.py,
# and the whole-audience compare runs under a budget of its own, activations/diff.py);
# beyond the limit DuckDB evicts cached blocks and spills to `<state file>.tmp`. Empty means
# DuckDB's own default. A first sync of 1M ran out of memory under 128MB when its plan was one
# transaction; the plan is chunked now (activations/plan.py).
DEFAULT_SYNC_MEMORY_LIMIT = "256MB"


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
