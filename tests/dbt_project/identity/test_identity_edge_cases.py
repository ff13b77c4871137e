"""Identity resolution on hand-built graphs written straight into the raw tables: a long chain,
hubs, placeholders, a shared device, two user_ids joined through a transitive path, aliases.
Every case is built with both component algorithms (DuckDB's USING KEY recursive CTE and the
FastSV rounds that Snowflake runs)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from headwater.warehouse import create_raw_tables

CHAIN = 150  # identifiers hop by hop: 2 * CHAIN + 2 of them, far past dbt_idr's 30 iterations
T0 = datetime(2024, 1, 1)


class RawWriter:
    """Writes raw rows with strictly increasing timestamps (so 'earliest' is unambiguous)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.tick = 0

    def _ts(self) -> datetime:
        self.tick += 1
        return T0 + timedelta(minutes=self.tick)

    def event(self, kind: str = "identify", *, user_id: str | None = None,
              anonymous_id: str | None = None, previous_id: str | None = None,
              email: str | None = None, phone: str | None = None) -> None:
        ts = self._ts()
        traits = {k: v for k, v in {"email": email, "phone": phone}.items() if v}
        self.con.execute(
            "insert into raw.events values (?, ?, ?, ?, ?, ?, ?, '{}', '{}', ?, ?)",
            [f"m{self.tick}", kind, None, user_id, anonymous_id, previous_id,
             json.dumps(traits) if traits else None, ts, ts])

    def order(self, *, user_id: str | None, email: str | None, phone: str | None) -> None:
        ts = self._ts()
        self.con.execute(
            "insert into raw.orders values (?, ?, ?, ?, 10, 'USD', 'completed', ?, '[]')",
            [f"o{self.tick}", email, phone, user_id, ts])

    def crm(self, contact_id: str, *, email: str | None, phone: str | None) -> None:
        self.con.execute(
            "insert into raw.crm_contacts values (?, ?, ?, 'A', 'B', 'gold', 1, ?)",
            [contact_id, email, phone, self._ts()])


def write_cases(con: duckdb.DuckDBPyConnection) -> None:
    create_raw_tables(con)
    w = RawWriter(con)
    # A long chain: anon0 - email0 - anon1 - email1 - ... - anon150 - user.
    for i in range(CHAIN):
        w.event(anonymous_id=f"chain-a{i}", email=f"chain{i}@x.io")
        w.event(anonymous_id=f"chain-a{i + 1}", email=f"chain{i}@x.io")
    w.event(user_id="chain-user", anonymous_id=f"chain-a{CHAIN}")
    # A listed placeholder used by 30 people.
    for k in range(30):
        w.event(user_id=f"hub-u{k}", anonymous_id=f"hub-a{k}", email="TEST@test.com ")
    # An unlisted hub: one hotel front-desk email on 6 people's orders and a CRM row.
    for k in range(6):
        w.order(user_id=f"desk-u{k}", email="frontdesk@hotel.io", phone=None)
    w.crm("desk-c1", email="frontdesk@hotel.io", phone="+14155550177")
    # Two user_ids joined only through a path: u1 - email1 - CRM contact - phone - u2.
    w.event(user_id="tp-u1", anonymous_id="tp-a1", email="tp1@x.io")
    w.crm("tp-c1", email="tp1@x.io", phone="+14155550111")
    w.order(user_id="tp-u2", email="tp2@x.io", phone="+14155550111")
    # A shared device: two users log in on it, sd-u2 last; each has a device of their own.
    w.event(user_id="sd-u1", anonymous_id="sd-own1", email="sd1@x.io")
    w.event(user_id="sd-u2", anonymous_id="sd-own2", email="sd2@x.io")
    w.event(user_id="sd-u1", anonymous_id="sd-shared")
    w.event(user_id="sd-u2", anonymous_id="sd-shared")
    w.event("page", anonymous_id="sd-shared")
    # Aliases: an anonymous previous_id joins; a former user_id is a second account (limit).
    w.event("page", anonymous_id="al-anon")
    w.event("alias", user_id="al-u", previous_id="al-anon")
    w.event(user_id="al-old", anonymous_id="al-old-device")
    w.event("alias", user_id="al-new", previous_id="al-old")
    # A placeholder user_id on two people's devices: it neither merges them nor makes the
    # devices look shared.
    w.event(user_id="unknown", anonymous_id="pu-a1", email="pu1@x.io")
    w.event(user_id="unknown", anonymous_id="pu-a2", email="pu2@x.io")


Built = tuple[Path, dict[tuple[str, str], str]]  # the warehouse file, identity_map at build


def _build(identity: SimpleNamespace, module_dir: Path, strategy: str, tests: bool) -> Built:
    db = module_dir / f"{strategy}.duckdb"
    with duckdb.connect(str(db)) as con:
        write_cases(con)
    # each strategy gets its own target dir: changing vars forces dbt to re-parse everything
    identity.build(db, module_dir / strategy, tests=tests,
                   dbt_vars={"identity_components_strategy": strategy})
    return db, identity.read_map(db)


@pytest.fixture(scope="module")
def recursive_db(module_dir: Path, identity: SimpleNamespace) -> Built:
    # `build`: the models and every identity YAML test (one profile per identifier...)
    return _build(identity, module_dir, "recursive", tests=True)


@pytest.fixture(scope="module")
def rounds_db(module_dir: Path, identity: SimpleNamespace) -> Built:
    return _build(identity, module_dir, "rounds", tests=False)


@pytest.fixture(scope="module", params=["recursive_db", "rounds_db"])
def built(request: pytest.FixtureRequest) -> Built:
    return request.getfixturevalue(request.param)


def profile(mapping: dict, identifier_type: str, value: str) -> str:
    return mapping[(identifier_type, value)]


def members(mapping: dict, profile_id: str) -> set[tuple[str, str]]:
    return {k for k, p in mapping.items() if p == profile_id}


def rejection(db: Path, value: str) -> tuple | None:
    with duckdb.connect(str(db)) as con:
        return con.execute(
            "select reason, detail, profile_id from identity_rejections "
            "where identifier_value = ?", [value]).fetchone()


def test_long_chain_is_one_profile(built: Built) -> None:
    _, m = built
    p = profile(m, "user_id", "chain-user")
    chain = members(m, p)
    assert len(chain) == 2 * CHAIN + 2
    assert ("anonymous_id", "chain-a0") in chain and ("email", f"chain{CHAIN - 1}@x.io") in chain
    # the earliest-seen member names the profile (a tie in time goes to the type priority)
    with duckdb.connect(str(built[0])) as con:
        canonical = con.execute(
            "select distinct i.identifier_type, i.identifier_value from int_identity_clusters c "
            "join int_identity_identifiers i on c.canonical_id = i.identifier_id "
            "where c.profile_id = ?", [p]).fetchall()
    assert canonical == [("email", "chain0@x.io")]


def test_placeholder_email_merges_nobody(built: Built) -> None:
    db, m = built
    assert len({profile(m, "user_id", f"hub-u{k}") for k in range(30)}) == 30
    assert ("email", "test@test.com") not in m
    assert rejection(db, "test@test.com")[0] == "blocklist"


def test_over_shared_email_merges_nobody(built: Built) -> None:
    db, m = built
    assert len({profile(m, "user_id", f"desk-u{k}") for k in range(6)}) == 6
    reason, detail, profile_id = rejection(db, "frontdesk@hotel.io")
    assert reason == "over_shared" and "6 distinct user_id" in detail and profile_id is None
    # the CRM contact keeps its own phone, without the hub
    assert members(m, profile(m, "crm_contact_id", "desk-c1")) == {
        ("crm_contact_id", "desk-c1"), ("phone", "+14155550177")}


def test_two_user_ids_on_a_transitive_path_are_split(built: Built) -> None:
    db, m = built
    p1, p2 = profile(m, "user_id", "tp-u1"), profile(m, "user_id", "tp-u2")
    assert p1 != p2
    # nearest user_id wins; the CRM contact is 2 hops from both and goes to the smaller id
    assert members(m, p1) == {("user_id", "tp-u1"), ("anonymous_id", "tp-a1"),
                              ("email", "tp1@x.io"), ("crm_contact_id", "tp-c1")}
    assert members(m, p2) == {("user_id", "tp-u2"), ("email", "tp2@x.io"),
                              ("phone", "+14155550111")}
    assert rejection(db, "+14155550111")[0] == "limit_exceeded"
    assert rejection(db, "tp-c1")[0] == "limit_exceeded"


def test_shared_device_merges_nobody_and_follows_its_last_user(built: Built) -> None:
    db, m = built
    p1, p2 = profile(m, "user_id", "sd-u1"), profile(m, "user_id", "sd-u2")
    assert p1 != p2
    assert profile(m, "anonymous_id", "sd-shared") == p2
    reason, detail, profile_id = rejection(db, "sd-shared")
    assert (reason, profile_id) == ("over_shared", p2) and "2 distinct user_id" in detail
    assert members(m, p1) == {("user_id", "sd-u1"), ("anonymous_id", "sd-own1"),
                              ("email", "sd1@x.io")}


def test_aliases(built: Built) -> None:
    _, m = built
    assert profile(m, "anonymous_id", "al-anon") == profile(m, "user_id", "al-u")
    # aliasing one user_id to another would put two accounts in one profile: the limit wins
    assert profile(m, "user_id", "al-old") != profile(m, "user_id", "al-new")
    assert profile(m, "anonymous_id", "al-old-device") == profile(m, "user_id", "al-old")


def test_placeholder_user_id_neither_merges_nor_marks_devices_shared(
    built: Built,
) -> None:
    db, m = built
    assert ("user_id", "unknown") not in m
    assert rejection(db, "unknown")[0] == "blocklist"
    assert rejection(db, "pu-a1") is None
    p1, p2 = profile(m, "anonymous_id", "pu-a1"), profile(m, "anonymous_id", "pu-a2")
    assert p1 != p2 and profile(m, "email", "pu1@x.io") == p1


def test_both_algorithms_give_the_same_profiles(recursive_db: Built, rounds_db: Built) -> None:
    assert rounds_db[1] == recursive_db[1]
    with duckdb.connect(str(rounds_db[0])) as con:
        leftovers = con.execute(
            "select table_name from information_schema.tables "
            "where contains(table_name, '__cc_') or contains(table_name, '__bfs_')").fetchall()
    assert leftovers == []  # the rounds' work tables are dropped by post-hooks


def test_new_identifier_joins_without_changing_the_profile_id(
    recursive_db: Built, module_dir: Path, identity: SimpleNamespace
) -> None:
    db, before = recursive_db
    with duckdb.connect(str(db)) as con:
        w = RawWriter(con)
        w.tick = 10_000
        w.event(user_id="chain-user", anonymous_id="chain-late-device")
    identity.build(db, module_dir / "recursive", command="run",
                   dbt_vars={"identity_components_strategy": "recursive"})
    after = identity.read_map(db)
    assert {k: after[k] for k in before} == before
    assert after[("anonymous_id", "chain-late-device")] == before[("user_id", "chain-user")]
