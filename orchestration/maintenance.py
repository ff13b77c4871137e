"""Compaction of the collector's landing folder, on a schedule.

`headwater collect` lands every flush as its own small Parquet file (hundreds a minute under
load: it answers only once a file is durable), and every reader pays per file: dbt's
`read_parquet` glob over raw.events (macros/collector/), the fast path's catch-up, the
collector's own restart. Left alone the folder grows without bound and builds slow down with
it. `collector.landing.compact` merges files older than five minutes into files of up to 1M
rows; it is safe beside a running collector and readers (see its docstring), so the schedule
needs no coordination with builds. Dagster decides when; the landing module decides how.
"""

# No `from __future__ import annotations`: Dagster resolves the op's Config annotation when the
# op is defined.
import os

from dagster import (
    Config,
    DefaultScheduleStatus,
    MetadataValue,
    OpExecutionContext,
    Output,
    ScheduleDefinition,
    job,
    op,
)

from collector.config import default_landing_dir
from collector.landing import compact, landed_files
from orchestration.resources import HeadwaterResource

# Every five minutes, the age below which compaction leaves files alone: each pass merges the
# files of the five minutes before, so the folder holds at most ~10 minutes of small files.
COMPACTION_CRON = "*/5 * * * *"


class CompactionConfig(Config):
    """What a compaction pass merges (the launchpad can change it for one run)."""

    # Files that landed more recently are left alone: the fast path may be reading them.
    min_age_seconds: float = 300.0
    # Rows per merged file at most (row groups of 122,880: about 8 of them).
    target_rows: int = 1_000_000


@op(name="compact_landing")
def compact_landing_op(context: OpExecutionContext, config: CompactionConfig,
                       headwater: HeadwaterResource) -> Output[int]:
    """Merge the landing folder's small event files; the output is how many files it merged."""
    settings = headwater.locations().settings
    landing = default_landing_dir({**os.environ,
                                   "HEADWATER_DUCKDB_PATH": str(settings.duckdb_path)})
    if not (landing / "events").is_dir():
        context.log.info(f"No landing folder at {landing}: nothing has been collected yet.")
        return Output(0, metadata={"landing_dir": MetadataValue.path(str(landing))})
    result = compact(landing, min_age_seconds=config.min_age_seconds,
                     target_rows=config.target_rows)
    remaining = len(landed_files(landing / "events"))
    context.log.info(f"Merged {result.merged_files} files into {result.written_files} "
                     f"({result.rows:,} rows); {remaining} files in {landing / 'events'}.")
    return Output(result.merged_files, metadata={
        "landing_dir": MetadataValue.path(str(landing)),
        "merged_files": result.merged_files,
        "written_files": result.written_files,
        "rows": result.rows,
        "dropped_copies": result.dropped_copies,
        "files_now": remaining,
    })


@job(name="landing_compaction",
     description="Merge the collector's small landing files (collector/landing.py compact).")
def landing_compaction_job() -> None:
    compact_landing_op()


# Running by default, unlike the audience sensors: it sends nothing and only rewrites files that
# the collector and the readers are built to see rewritten.
landing_compaction_schedule = ScheduleDefinition(
    name="landing_compaction_schedule",
    job=landing_compaction_job,
    cron_schedule=COMPACTION_CRON,
    default_status=DefaultScheduleStatus.RUNNING,
)
