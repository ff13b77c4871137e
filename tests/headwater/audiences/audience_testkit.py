"""Helpers for the audience tests: a tiny dbt project with known segment members.

The real segments are written by another part of the project; this world keeps the audience
tests independent of their logic while using the real shipped selectors.yml, the real generator
and real dbt on a real DuckDB file.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from headwater.audiences import default_work_dir
from headwater.config import REPO_ROOT, Settings

PROFILES = [f"p{i:02d}" for i in range(1, 13)]
# segment -> members; chosen so that every shipped audience is non-empty and differs from its
# parts (each operator changes the answer).
SEGMENTS: dict[str, set[str]] = {
    "cart_abandoners": {"p01", "p02", "p03", "p04", "p05"},
    "email_reachable": {"p01", "p03", "p06", "p07"},
    "sms_reachable": {"p02", "p03", "p08"},
    "ads_reachable": {"p04", "p05", "p09"},
    "gold_tier": {"p01", "p02", "p06", "p07", "p10", "p11"},
    "lapsed_customers": {"p06", "p10", "p12"},
    "churn_risk_high": {"p07", "p11", "p01"},
    "purchased_recently": {"p11", "p02"},
    "high_value": {"p03", "p10"},
}
# Segments that also share the tag `reachable` (a tag naming several segments).
REACHABLE = ("email_reachable", "sms_reachable")

EXTRA_SELECTORS = """
  - name: audience_reachable_high_value
    description: High value and reachable on email or SMS (a tag shared by two segments).
    definition:
      intersection:
        - method: fqn
          value: high_value
        - tag: reachable
  - name: audience_cart_or_gold_not_lapsed
    description: Union with an exclude item, and a bare model name.
    definition:
      union:
        - cart_abandoners
        - method: tag
          value: gold_tier
        - exclude:
            - tag: lapsed_customers
            - tag: churn_risk_high
  - name: audience_reuses_winback
    description: Reuses another selector by name.
    definition:
      method: selector
      value: audience_loyalty_winback
  - name: nightly_staging
    description: An ordinary selector; not an audience.
    definition:
      method: fqn
      value: stg_things
"""


def _segment_sql(name: str, members: set[str]) -> str:
    tags = [name] + (["reachable"] if name in REACHABLE else [])
    values = ", ".join(f"'{m}'" for m in sorted(members))
    return (
        f"{{{{ config(tags={tags!r}) }}}}\n"
        f"select profile_id from {{{{ ref('customer_profiles') }}}}\n"
        f"where profile_id in ({values})\n"
    )


def make_project(root: Path) -> Path:
    """Write the tiny project into `root` and return it."""
    (root / "models" / "segments").mkdir(parents=True)
    (root / "models" / "audiences").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dbt_project" / "profiles.yml", root / "profiles.yml")
    (root / "dbt_project.yml").write_text(
        "name: headwater\nversion: '0.1.0'\nconfig-version: 2\nprofile: headwater\n"
        "model-paths: ['models']\n"
        "models:\n  headwater:\n"
        "    +materialized: table\n"
        "    segments:\n      +tags: ['segment']\n"
        "    audiences:\n      +tags: ['audience']\n"
    )
    rows = ", ".join(
        f"('{p}', '{p}@example.com', 'First{p[1:]}', {'true' if i % 2 else 'false'})"
        for i, p in enumerate(PROFILES)
    )
    (root / "models" / "customer_profiles.sql").write_text(
        f"select * from (values {rows}) as t(profile_id, email, first_name, email_consent)\n"
    )
    (root / "models" / "stg_things.sql").write_text("select 'p01' as profile_id\n")
    for name, members in SEGMENTS.items():
        (root / "models" / "segments" / f"{name}.sql").write_text(_segment_sql(name, members))
    shipped = (REPO_ROOT / "dbt_project" / "selectors.yml").read_text()
    (root / "selectors.yml").write_text(shipped.rstrip("\n") + "\n" + EXTRA_SELECTORS)
    return root


@dataclass(frozen=True)
class World:
    project: Path
    warehouse: Path
    tmp: Path

    @property
    def settings(self) -> Settings:
        return Settings.from_env(
            {
                "HEADWATER_DUCKDB_PATH": str(self.warehouse),
                "HEADWATER_DBT_PROJECT_DIR": str(self.project),
            }
        )

    def dbt_args(self) -> list[str]:
        return ["--target-path", str(self.tmp / "target"), "--log-path", str(self.tmp / "logs")]


def copy_project(world: World, dest: Path) -> Path:
    """A copy of the world's project to edit, carrying its cached catalog (mtimes are kept,
    so the copy does not pay for another dbt parse until a model file changes)."""
    shutil.copytree(world.project, dest, ignore=shutil.ignore_patterns("target", "logs"))
    cache = default_work_dir(world.settings) / "catalog.json"
    (dest / "target" / "headwater_audiences").mkdir(parents=True)
    shutil.copy2(cache, dest / "target" / "headwater_audiences" / "catalog.json")
    return dest


def headwater_cli(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `headwater` command in its own process, as a user would.

    A separate process also matters for DuckDB: dbt-duckdb keeps its connection open in the
    process that ran dbt, and DuckDB refuses a read-only connection beside it.
    """
    env = {
        **os.environ,
        "HEADWATER_DUCKDB_PATH": str(world.warehouse),
        "HEADWATER_DBT_PROJECT_DIR": str(world.project),
        "HEADWATER_TARGET": "duckdb",
    }
    exe = Path(sys.executable).parent / "headwater"
    return subprocess.run([str(exe), *args], env=env, capture_output=True, text=True)
