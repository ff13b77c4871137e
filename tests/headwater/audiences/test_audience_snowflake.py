"""The generated audience models build on the Snowflake target (fakesnow) with the same members."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from audience_testkit import SEGMENTS, World, copy_project

from headwater.config import Settings
from headwater.dbt import run_dbt

fakesnow = pytest.importorskip("fakesnow")
pytestmark = [pytest.mark.snowflake, pytest.mark.slow]

SNOWFLAKE_ENV = {
    "SNOWFLAKE_ACCOUNT": "headwater-test",
    "SNOWFLAKE_USER": "dbt",
    "SNOWFLAKE_PASSWORD": "not-a-secret",
    "SNOWFLAKE_DATABASE": "HEADWATER",
    "SNOWFLAKE_SCHEMA": "ANALYTICS",
    "SNOWFLAKE_WAREHOUSE": "compute_wh",
    "SNOWFLAKE_ROLE": "transformer",
}


@pytest.fixture(scope="module")
def snowflake_world(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("audiences_snowflake")
    project = copy_project(world, tmp / "project")
    db_path = tmp / "fakesnow"
    db_path.mkdir()
    old = {k: os.environ.get(k) for k in SNOWFLAKE_ENV}
    os.environ.update(SNOWFLAKE_ENV)
    try:
        with fakesnow.patch(db_path=str(db_path)):
            import snowflake.connector

            con = snowflake.connector.connect()
            con.cursor().execute("create database if not exists HEADWATER")
            con.close()
            settings = Settings.from_env(
                {"HEADWATER_TARGET": "snowflake", "HEADWATER_DBT_PROJECT_DIR": str(project)}
            )
            run_dbt(
                "build",
                ["--target-path", str(tmp / "target"), "--log-path", str(tmp / "logs")],
                settings,
            )
        yield db_path
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_winback_members_on_snowflake(snowflake_world: Path) -> None:
    import snowflake.connector

    with fakesnow.patch(db_path=str(snowflake_world)):
        con = snowflake.connector.connect(database="HEADWATER", schema="ANALYTICS")
        cur = con.cursor()
        cur.execute("select profile_id from audience_loyalty_winback")
        got = sorted(r[0] for r in cur.fetchall())
        cur.execute("select count(*) from audience_cart_abandonment_sms")
        sms = cur.fetchone()[0]
        con.close()
    s = SEGMENTS
    want = (s["gold_tier"] & (s["lapsed_customers"] | s["churn_risk_high"])) - s[
        "purchased_recently"
    ]
    assert got == sorted(want)
    assert sms == len(s["cart_abandoners"] & s["sms_reachable"])
