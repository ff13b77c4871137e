"""From an SDK-shaped HTTP request to the warehouse: collected, landed, read by the next build.

The collector never writes the warehouse file (dbt holds it during builds); its landing folder
joins raw.events through macros/collector/raw_events_relation.sql.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime
from pathlib import Path

import duckdb
import requests

from collector.config import CollectorConfig
from collector.server import Collector
from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.warehouse import create_raw_tables

AS_OF = datetime(2026, 11, 1, 12, 0, 0)


def test_collected_identify_and_track_are_stitched_into_one_profile(tmp_path: Path) -> None:
    warehouse = tmp_path / "wh.duckdb"
    con = duckdb.connect(str(warehouse))
    create_raw_tables(con)
    con.close()
    landing = tmp_path / "landing"
    config = CollectorConfig(landing_dir=landing, write_keys=frozenset({"wk"}), port=0)
    batch = {
        "batch": [
            {
                "type": "identify",
                "messageId": "m-1",
                "userId": "u-42",
                "anonymousId": "anon-42",
                "traits": {"email": "  Ada@Example.ORG ", "phone": "(415) 555-0101"},
                "timestamp": "2026-10-31T10:00:00Z",
            },
            {
                "type": "track",
                "messageId": "m-2",
                "anonymousId": "anon-42",
                "event": "Product Added",
                "properties": {"cart_id": "c-1", "sku": "sku-1", "price": 10, "quantity": 1},
                "timestamp": "2026-10-31T10:01:00Z",
            },
        ],
        "sentAt": "2026-10-31T10:01:00Z",
        "context": {"library": {"name": "analytics-python", "version": "2.3.3"}},
    }
    auth = base64.b64encode(b"wk:").decode()
    with Collector(config) as collector:
        answer = requests.post(
            f"{collector.url}/v1/batch",
            json=batch,
            headers={"Authorization": f"Basic {auth}"},
            timeout=10,
        )
        # Sent twice, as an at-least-once SDK retry would: lands once.
        requests.post(
            f"{collector.url}/v1/batch",
            json=batch,
            headers={"Authorization": f"Basic {auth}"},
            timeout=10,
        )
    assert answer.status_code == 200, answer.text

    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(warehouse)})
    # The default landing folder is next to the warehouse; this one is elsewhere, as a user's
    # HEADWATER_LANDING_DIR would be.
    os.environ["HEADWATER_LANDING_DIR"] = str(landing)
    try:
        run_dbt(
            "build",
            [
                "--select",
                "+identity_map",
                "--target-path",
                str(tmp_path / "target"),
                "--log-path",
                str(tmp_path / "logs"),
                "--vars",
                f"{{as_of: '{AS_OF.isoformat(sep=' ')}'}}",
            ],
            settings,
        )
    finally:
        os.environ.pop("HEADWATER_LANDING_DIR", None)
    con = duckdb.connect(str(warehouse))
    events = con.execute("select count(*) from stg_events").fetchone()
    rows = con.execute(
        "select identifier_type, identifier_value, profile_id from identity_map order by 1"
    ).fetchall()
    con.close()
    assert events == (2,)
    assert {(t, v) for t, v, _ in rows} == {
        ("anonymous_id", "anon-42"),
        ("email", "ada@example.org"),
        ("phone", "+14155550101"),
        ("user_id", "u-42"),
    }
    assert len({p for _, _, p in rows}) == 1
