"""The session world: a small generated world, built once through Dagster, shared by the tests.

Everything is real: the project's own world generator, real dbt on a real DuckDB file, the sync
engine delivering to a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from dagster import AssetsDefinition, DagsterInstance, Definitions, materialize
from orch_receiver import Receiver

REPO = Path(__file__).resolve().parents[2]
SECRET = "orchestration-test-secret"
CUSTOMERS = 300
SEED = 11

# Two webhook syncs on two audiences: mirror (adds, changes, removes) and append (messages).
SYNCS_YML = """
syncs:
  - name: winback_hook
    audience: audience_loyalty_winback
    destination:
      kind: webhook
      credentials: {signing_secret: HW_ORCH_TEST_SECRET}
      options: {path: /winback}
    channel: email
    mode: mirror
    identifiers: {email: email}
    fields: {first_name: first_name}
    # one quick retry: the failure test points this sync at a closed port
    retry: {total: 1, backoff_factor: 0, backoff_jitter: 0, timeout_seconds: 5}
  - name: cart_email_hook
    audience: audience_cart_abandonment_email
    destination:
      kind: webhook
      credentials: {signing_secret: HW_ORCH_TEST_SECRET}
      options: {path: /cart}
    channel: email
    mode: mirror
    identifiers: {email: email}
    fields: {first_name: first_name}
"""


@dataclass
class World:
    root: Path
    env: dict[str, str]
    receiver: Receiver
    defs: Definitions
    instance: DagsterInstance

    @property
    def warehouse(self) -> Path:
        return Path(self.env["HEADWATER_DUCKDB_PATH"])

    @property
    def dbt_assets(self) -> AssetsDefinition:
        return self.defs.get_assets_def("customer_profiles")  # the one dbt multi-asset

    def resources(self) -> dict[str, object]:
        return dict(self.defs.resources or {})


def _generate(path: Path) -> None:
    from headwater.demo.world import generate_world

    con = duckdb.connect(str(path))
    try:
        now = datetime.now().replace(microsecond=0)
        generate_world(con, customers=CUSTOMERS, seed=SEED, as_of=now)
    finally:
        con.close()


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("orchestration")
    (root / "syncs.yml").write_text(SYNCS_YML)
    warehouse = root / "warehouse" / "headwater.duckdb"
    warehouse.parent.mkdir()
    _generate(warehouse)
    with Receiver() as receiver:
        env = {
            "HEADWATER_DUCKDB_PATH": str(warehouse),
            "HEADWATER_SYNCS_FILE": str(root / "syncs.yml"),
            "HEADWATER_STATE_PATH": str(warehouse.parent / "headwater_state.duckdb"),
            "HEADWATER_DAGSTER_WORK_DIR": str(root / "dagster-dbt"),
            "HEADWATER_WEBHOOK_BASE_URL": receiver.url,
            "HEADWATER_ALERT_WEBHOOK_URL": receiver.url + "/alerts",
            "HW_ORCH_TEST_SECRET": SECRET,
            "DAGSTER_HOME": str(root / "dagster_home"),
            # dagster-dbt runs the `dbt` next to this interpreter.
            "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""),
        }
        (root / "dagster_home").mkdir()
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            from orchestration.definitions import build_definitions
            from orchestration.resources import Locations

            defs = build_definitions(Locations.from_env())
            with DagsterInstance.ephemeral() as instance:
                yield World(root, env, receiver, defs, instance)
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def built(world: World) -> World:
    """The whole dbt project materialized once through Dagster (which also publishes)."""
    result = materialize(
        [world.dbt_assets], resources=world.resources(), instance=world.instance
    )
    assert result.success
    return world
