"""Real HTTP to an in-process collector; what landed is read back with DuckDB via read_sql."""

from __future__ import annotations

import gzip
import json
import threading
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
import requests
from collector_testkit import (
    WRITE_KEY,
    landed,
    make_config,
    python_message,
    python_post,
    quarantined,
)

from collector import landing
from collector.config import ConfigError
from collector.server import Collector
from headwater.warehouse import create_raw_tables


def test_analytics_python_batch_lands_every_column(collector: Collector, landing_dir: Path) -> None:
    track = python_message(
        "track",
        timestamp="2026-03-01T10:00:00.000+00:00",
        properties={"cart_id": "c1", "revenue": 12.5},
        context={"library": {"name": "analytics-python", "version": "2.3.4"}, "ip": "1.2.3.4"},
    )
    ident = python_message("identify", userId=None, anonymousId="anon-1")
    # The client's clock is 1 hour ahead: sentAt - timestamp = 5 s of queueing.
    response = python_post(collector.url, [track, ident], sent_at="2026-03-01T10:00:05+00:00")
    assert response.status_code == 200
    assert response.json() == {"success": True}
    rows = {r["message_id"]: r for r in landed(landing_dir)}
    assert set(rows) == {track["messageId"], ident["messageId"]}
    t = rows[track["messageId"]]
    assert (t["type"], t["event"], t["user_id"], t["anonymous_id"]) == (
        "track",
        "Product Added",
        "user-1",
        None,
    )
    assert json.loads(t["properties"]) == {"cart_id": "c1", "revenue": 12.5}
    assert json.loads(t["context"])["library"]["name"] == "analytics-python"
    # Segment's correction: timestamp = receivedAt - (sentAt - originalTimestamp).
    skew = t["received_at"] - t["timestamp"]
    assert timedelta(seconds=5) <= skew < timedelta(seconds=6)
    i = rows[ident["messageId"]]
    assert (i["type"], i["user_id"], i["anonymous_id"]) == ("identify", None, "anon-1")
    assert json.loads(i["traits"]) == {"email": "Ada@Example.com"}
    assert i["received_at"] == t["received_at"]  # one request, one file, one stamp


def test_single_calls_take_type_from_path_and_body_write_key(
    collector: Collector, landing_dir: Path
) -> None:
    # analytics.js posts text/plain (no CORS preflight) with writeKey in the body, no auth header.
    calls = {
        "/v1/track": {"event": "Checkout Started", "anonymousId": "a1"},
        "/v1/t": {"event": "Short Path", "anonymousId": "a1"},
        "/v1/identify": {"userId": "u1", "traits": {"phone": "555 0100"}},
        "/v1/page": {"anonymousId": "a1", "name": "Home", "category": "Docs", "properties": {}},
        "/v1/screen": {"userId": "u1", "name": "Cart"},
        "/v1/alias": {"userId": "u1", "previousId": "a1"},
        "/v1/group": {"userId": "u1", "groupId": "g1", "traits": {"email": "co@corp.com"}},
    }
    ids = {}
    for path, body in calls.items():
        body = {
            **body,
            "writeKey": WRITE_KEY,
            "type": "ignored",
            "messageId": f"id{path}",
            "sentAt": "2026-01-01T00:00:00Z",
            "integrations": {"All": False},
        }
        response = requests.post(
            collector.url + path,
            data=json.dumps(body),
            headers={"Content-Type": "text/plain"},
            timeout=10,
        )
        assert response.status_code == 200, (path, response.text)
        ids[path] = body["messageId"]
    rows = {r["message_id"]: r for r in landed(landing_dir)}
    assert rows[ids["/v1/track"]]["type"] == "track"
    assert rows[ids["/v1/t"]]["event"] == "Short Path"
    assert rows[ids["/v1/identify"]]["type"] == "identify"
    page = rows[ids["/v1/page"]]
    assert (page["type"], json.loads(page["properties"])) == (
        "page",
        {"name": "Home", "category": "Docs"},
    )
    assert rows[ids["/v1/screen"]]["type"] == "screen"
    assert rows[ids["/v1/alias"]]["previous_id"] == "a1"
    group = rows[ids["/v1/group"]]
    # A group's traits describe the company; they must not read as the person's email.
    assert group["traits"] is None
    assert json.loads(group["properties"]) == {"groupId": "g1", "traits": {"email": "co@corp.com"}}
    # No client time at all: timestamp is when the request arrived, just before it landed.
    alias = rows[ids["/v1/alias"]]
    assert timedelta(0) <= alias["received_at"] - alias["timestamp"] < timedelta(seconds=1)


def test_retries_land_once_even_across_a_restart(landing_dir: Path) -> None:
    messages = [python_message() for _ in range(3)]
    with Collector(make_config(landing_dir)) as first:
        assert python_post(first.url, messages).status_code == 200
        assert python_post(first.url, messages[:2]).status_code == 200  # an SDK retry
        # Within one request too.
        assert python_post(first.url, [messages[0], python_message(messageId="x")]).ok
    with Collector(make_config(landing_dir)) as second:
        assert python_post(second.url, messages).status_code == 200
    ids = [r["message_id"] for r in landed(landing_dir)]
    assert sorted(ids) == sorted([m["messageId"] for m in messages] + ["x"])


def test_missing_message_id_gets_a_content_id_so_blind_retries_dedupe(
    collector: Collector, landing_dir: Path
) -> None:
    body = {"userId": "u9", "event": "Signed Up", "timestamp": "2026-01-01T00:00:00Z"}
    for sent_at in ("2026-01-01T00:00:01Z", "2026-01-01T00:00:09Z"):
        payload = {**body, "sentAt": sent_at}
        assert requests.post(
            collector.url + "/v1/track", json=payload, auth=(WRITE_KEY, ""), timeout=10
        ).ok
    rows = landed(landing_dir)
    assert len(rows) == 1 and rows[0]["message_id"].startswith("hw-")


def test_bad_messages_are_quarantined_with_reason_and_the_rest_land(
    collector: Collector, landing_dir: Path
) -> None:
    good = python_message()
    bad = [
        python_message(userId=None),  # no identity
        python_message(event=None),  # track without event
        python_message("alias"),  # alias without previousId
        python_message("group"),  # group without groupId
        python_message(properties=["not", "an", "object"]),
        python_message(timestamp="yesterday-ish"),
        python_message(type="purchase"),
        python_message(properties={"blob": "x" * 40_000}),  # over 32 KB
        "not an object",
    ]
    response = python_post(collector.url, [good, *bad])
    assert response.status_code == 200 and response.json() == {"success": True}
    assert response.headers["X-Headwater-Quarantined"] == str(len(bad))
    assert [r["message_id"] for r in landed(landing_dir)] == [good["messageId"]]
    reasons = [q["reason"].split(":")[0] for q in quarantined(landing_dir)]
    assert sorted(reasons) == sorted(
        [
            "missing_identity",
            "missing_event",
            "missing_previous_id",
            "missing_group_id",
            "invalid_properties",
            "invalid_timestamp",
            "invalid_type",
            "message_too_large",
            "not_an_object",
        ]
    )
    kept = {q["message_id"]: q for q in quarantined(landing_dir) if q["message_id"]}
    original = bad[0]
    assert json.loads(kept[original["messageId"]]["payload"]) == original
    assert all(q["endpoint"] == "/v1/batch" for q in quarantined(landing_dir))


def test_invalid_json_is_400_and_quarantined_without_the_write_key(
    collector: Collector, landing_dir: Path
) -> None:
    text = '{"batch": [{"type": "track", "writeKey": "' + WRITE_KEY + '", '
    response = requests.post(
        collector.url + "/v1/batch", data=text, auth=(WRITE_KEY, ""), timeout=10
    )
    assert response.status_code == 400
    assert response.json()["success"] is False and response.json()["code"] == "invalid_json"
    [q] = quarantined(landing_dir)
    assert q["reason"].startswith("invalid_json")
    assert WRITE_KEY not in q["payload"] and '"type": "track"' in q["payload"]
    bad_batch = requests.post(
        collector.url + "/v1/batch",
        json={"batch": {"type": "track"}},
        auth=(WRITE_KEY, ""),
        timeout=10,
    )
    assert bad_batch.status_code == 400
    assert quarantined(landing_dir)[-1]["reason"].startswith("invalid_batch")
    assert landed(landing_dir) == []


@pytest.mark.parametrize(
    "auth,body_key",
    [(("wrong", ""), WRITE_KEY), (None, "wrong"), (None, None), (("", ""), None)],
)
def test_wrong_or_missing_write_key_is_refused_and_nothing_lands(
    collector: Collector, landing_dir: Path, auth: tuple[str, str] | None, body_key: str | None
) -> None:
    body = {"batch": [python_message()], "sentAt": "2026-01-01T00:00:00Z"}
    if body_key is not None:
        body["writeKey"] = body_key
    response = requests.post(collector.url + "/v1/batch", json=body, auth=auth, timeout=10)
    assert response.status_code == 401
    assert response.json() == {
        "success": False,
        "code": "unauthorized",
        "message": response.json()["message"],
    }
    assert landed(landing_dir) == [] and quarantined(landing_dir) == []
    bearer = requests.post(
        collector.url + "/v1/batch",
        json=body,
        timeout=10,
        headers={"Authorization": "Bearer " + WRITE_KEY},
    )
    assert bearer.status_code == 401


def test_size_limits_apply_before_and_after_gzip(collector: Collector, landing_dir: Path) -> None:
    session = requests.Session()
    url = collector.url
    big_batch = [python_message(properties={"pad": "x" * 20_000}) for _ in range(30)]  # ~600 KB
    assert python_post(url, big_batch, gzipped=False, session=session).status_code == 413
    # gzip shrinks it far below 500 KB on the wire; the decompressed size still counts.
    assert python_post(url, big_batch, gzipped=True, session=session).status_code == 413
    bomb = gzip.compress(b'{"batch": [' + b" " * 50_000_000 + b"]}")
    assert len(bomb) < 100_000
    response = session.post(
        url + "/v1/batch",
        data=bomb,
        auth=(WRITE_KEY, ""),
        timeout=10,
        headers={"Content-Encoding": "gzip"},
    )
    assert response.status_code == 413
    single = {"userId": "u", "event": "E", "properties": {"pad": "x" * 33_000}}
    assert (
        session.post(url + "/v1/track", json=single, auth=(WRITE_KEY, ""), timeout=10).status_code
        == 413
    )
    assert (
        session.post(
            url + "/v1/track",
            data=b"{}",
            auth=(WRITE_KEY, ""),
            timeout=10,
            headers={"Content-Encoding": "br"},
        ).status_code
        == 415
    )
    # The same keep-alive connection still works and a batch just under the limit lands.
    ok_batch = [python_message(properties={"pad": "x" * 20_000}) for _ in range(20)]
    assert python_post(url, ok_batch, gzipped=True, session=session).status_code == 200
    assert len(landed(landing_dir)) == 20
    assert quarantined(landing_dir) == []


def test_concurrent_requests_all_land_in_landing_order(
    collector: Collector, landing_dir: Path
) -> None:
    acknowledged: list[str] = []
    lock = threading.Lock()

    def client() -> None:
        session = requests.Session()
        for _ in range(25):
            batch = [python_message() for _ in range(4)]
            if python_post(collector.url, batch, session=session, gzipped=False).ok:
                with lock:
                    acknowledged.extend(m["messageId"] for m in batch)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(acknowledged) == 8 * 25 * 4
    rows = landed(landing_dir)
    assert sorted(r["message_id"] for r in rows) == sorted(acknowledged)
    files = landing.landed_files(landing_dir / "events")
    assert len(files) <= 8 * 25  # group commit never splits a request
    for f in files:  # a file's name states exactly its received_at
        stamps = set(pq.read_table(f.path, columns=["received_at"]).column(0).to_pylist())
        assert len(stamps) == 1 and landing.to_ns(stamps.pop()) == f.first_ns == f.last_ns
    assert [f.first_ns for f in files] == sorted({f.first_ns for f in files})
    middle = files[len(files) // 2]
    since = landing.files_since(
        landing_dir, datetime(1970, 1, 1) + timedelta(microseconds=middle.last_ns // 1000)
    )
    assert since == [f.path for f in files[len(files) // 2 + 1 :]]


def test_read_sql_is_empty_safe_and_unions_with_raw_events(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "wh.duckdb"))
    create_raw_tables(con)
    con.execute(
        "insert into raw.events (message_id, type, received_at) values ('w1', 'track', now())"
    )
    sql = landing.read_sql(tmp_path / "nothing-yet")
    assert con.execute(f"select count(*) from {sql}").fetchall() == [(0,)]
    union = con.sql(
        f"select message_id from raw.events union all by name select message_id from {sql}"
    )
    assert union.fetchall() == [("w1",)]
    raw_types = con.sql("describe raw.events").fetchall()
    landed_types = con.sql(f"describe select * from {sql}").fetchall()
    assert [(c[0], c[1]) for c in landed_types] == [(c[0], c[1]) for c in raw_types]


def test_one_collector_per_landing_folder(collector: Collector, landing_dir: Path) -> None:
    with pytest.raises(ConfigError, match="Another collector"):
        Collector(make_config(landing_dir)).start()


def test_no_write_key_configured_refuses_to_start(tmp_path: Path) -> None:
    from collector.config import CollectorConfig

    with pytest.raises(ConfigError, match="HEADWATER_WRITE_KEY"):
        CollectorConfig.from_env({"HEADWATER_WRITE_KEY": " , "}, landing_dir=tmp_path)
