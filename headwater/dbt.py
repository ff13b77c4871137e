"""Run dbt on the Headwater project, in-process, against the configured target."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from headwater.config import Settings


class DbtRunError(RuntimeError):
    """dbt finished with errors; the message lists the failed nodes."""


@dataclass(frozen=True)
class DbtRunSummary:
    """What a dbt invocation did, node by node."""

    command: str
    # (unique_id, status, message) per executed node
    nodes: list[tuple[str, str, str]]

    @property
    def failed(self) -> list[tuple[str, str, str]]:
        return [n for n in self.nodes if n[1] in {"error", "fail", "runtime error"}]


def dbt_env(settings: Settings) -> dict[str, str]:
    """Environment variables the profile and models read, resolved for this process."""
    env = {
        "HEADWATER_DUCKDB_PATH": str(settings.duckdb_path),
        "HEADWATER_TARGET": settings.target,
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    if settings.target == "duckdb":
        # Messages `headwater collect` landed join raw.events (macros/collector/).
        from collector.config import default_landing_dir
        from collector.landing import ensure_layout

        landing = default_landing_dir(
            {**os.environ, "HEADWATER_DUCKDB_PATH": str(settings.duckdb_path)}
        )
        ensure_layout(landing)
        env["HEADWATER_LANDING_DIR"] = str(landing)
        # What syncs and journeys delivered, for attribution (macros/measurement/).
        from headwater import activity

        feed = activity.activity_dir(settings)
        activity.ensure_layout(feed)
        env[activity.ACTIVITY_DIR_ENV] = str(feed)
    return env


def base_args(settings: Settings) -> list[str]:
    """Flags that point dbt at this project, its profile and the target."""
    return [
        "--project-dir",
        str(settings.dbt_project_dir),
        "--profiles-dir",
        str(settings.dbt_project_dir),
        "--target",
        settings.target,
    ]


def run_dbt(command: str, args: Sequence[str], settings: Settings) -> DbtRunSummary:
    """Invoke `dbt <command> <args>` in this process; raise DbtRunError when a node fails.

    In-process rather than a subprocess: it saves the interpreter start-up, and fakesnow can
    only intercept Snowflake connections made inside the process that patched it.
    """
    from dbt.cli.main import dbtRunner

    env = dbt_env(settings)
    if settings.target == "duckdb":
        settings.duckdb_path.parent.mkdir(parents=True, exist_ok=True)
    # The profile reads these with env_var() while dbt runs; restore them afterwards so that one
    # process can build several warehouses (tests do) without one run's paths leaking into the next.
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        result = dbtRunner().invoke([command, *base_args(settings), *args])
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    nodes: list[tuple[str, str, str]] = []
    if result.result is not None and hasattr(result.result, "results"):
        for r in result.result.results:
            nodes.append((r.node.unique_id, str(r.status), r.message or ""))
    summary = DbtRunSummary(command=command, nodes=nodes)
    if not result.success:
        detail = "\n".join(f"  {uid}: {status} {msg}" for uid, status, msg in summary.failed)
        if result.exception is not None:
            detail += f"\n  {type(result.exception).__name__}: {result.exception}"
        raise DbtRunError(
            f"dbt {command} failed on target {settings.target!r}:\n{detail}\n"
            "Fix the failing models or tests above, then run it again "
            "(`headwater build --select <model>` rebuilds just one)."
        )
    return summary
