"""Identity resolution on a generated world, checked against its ground truth (demo_truth)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

import duckdb
import pytest

from headwater.demo.world import generate_world

CUSTOMERS = 2000


@pytest.fixture(scope="module")
def world(module_dir: Path, identity: SimpleNamespace) -> Path:
    db = module_dir / "world.duckdb"
    with duckdb.connect(str(db)) as con:
        generate_world(con, customers=CUSTOMERS, seed=11, as_of=datetime(2025, 3, 1))
    identity.build(db, module_dir)  # build = run + every identity YAML test
    return db


def q(db: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(db)) as con:
        return con.execute(sql).fetchall()


# Identifiers the truth gives to one customer only (a value two customers share can merge
# neither, so it is checked by the shared-device and placeholder tests instead).
OWNED = """
    select * from demo_truth.identifiers
    where (identifier_type, identifier_value) in (
        select identifier_type, identifier_value from demo_truth.identifiers
        group by all having count(distinct customer_id) = 1)
"""


def test_no_customer_is_split_across_profiles(world: Path) -> None:
    split = q(world, f"""
        select t.customer_id, count(distinct m.profile_id)
        from ({OWNED}) t join identity_map m using (identifier_type, identifier_value)
        group by t.customer_id having count(distinct m.profile_id) > 1""")
    assert split == []


def test_every_customer_identifier_is_mapped(world: Path) -> None:
    missing = q(world, f"""
        select t.* from ({OWNED}) t
        anti join identity_map m using (identifier_type, identifier_value)""")
    assert missing == []
    assert q(world, "select count(distinct profile_id) from identity_map") == [(CUSTOMERS,)]


def test_no_two_customers_are_merged(world: Path) -> None:
    merged = q(world, """
        select m.profile_id, count(distinct t.customer_id)
        from identity_map m join demo_truth.identifiers t using (identifier_type, identifier_value)
        group by m.profile_id having count(distinct t.customer_id) > 1""")
    assert merged == []


def test_no_identifier_outside_the_truth_is_in_a_profile_graph(world: Path) -> None:
    # everything a graph member is a real customer's identifier: placeholders and shared
    # devices never sit inside a profile's graph
    extra = q(world, """
        select m.identifier_type, m.identifier_value from identity_map m
        anti join demo_truth.identifiers t using (identifier_type, identifier_value)
        where m.resolution = 'graph'""")
    assert extra == []


def test_placeholders_never_merge_anyone(world: Path) -> None:
    used = q(world, """
        select p.identifier_type, p.normalized_value, r.reason, m.profile_id
        from demo_truth.placeholders p
        join int_identity_identifiers i
            on i.identifier_type = p.identifier_type and i.identifier_value = p.normalized_value
        left join identity_rejections r
            on r.identifier_type = p.identifier_type and r.identifier_value = p.normalized_value
        left join identity_map m
            on m.identifier_type = p.identifier_type and m.identifier_value = p.normalized_value
    """)
    assert used, "the world should use some placeholder that survives normalization"
    for identifier_type, value, reason, profile_id in used:
        assert reason == "blocklist", (identifier_type, value)
        assert profile_id is None, (identifier_type, value)
    edges = q(world, """
        select count(*) from int_identity_edges e
        join int_identity_identifiers i
            on i.identifier_id in (e.identifier_id_a, e.identifier_id_b)
        where i.rejection_reason is not null""")
    assert edges == [(0,)]


def test_shared_devices_never_merge_users(world: Path) -> None:
    devices = q(world, """
        select s.anonymous_id, s.users, r.reason, m.resolution, m.profile_id
        from demo_truth.shared_devices s
        left join identity_rejections r
            on r.identifier_type = 'anonymous_id' and r.identifier_value = s.anonymous_id
        left join identity_map m
            on m.identifier_type = 'anonymous_id' and m.identifier_value = s.anonymous_id""")
    assert devices
    for anonymous_id, users, reason, resolution, profile_id in devices:
        assert users >= 2
        assert reason == "over_shared", anonymous_id
        # attributed to one user's profile, without joining that profile's graph
        assert resolution == "most_recent_user" and profile_id is not None
    # a profile holding a shared device still holds one customer only (checked above), and
    # every shared device's users keep their own profiles
    per_device = q(world, """
        with members as (
            select distinct d.anonymous_id, t.customer_id
            from demo_truth.shared_devices d
            join raw.events e on e.anonymous_id = d.anonymous_id
            join demo_truth.identifiers t
                on t.identifier_type = 'user_id' and t.identifier_value = e.user_id)
        select m.anonymous_id, count(distinct m.customer_id), count(distinct im.profile_id)
        from members m
        join demo_truth.identifiers t using (customer_id)
        join identity_map im using (identifier_type, identifier_value)
        where t.identifier_type = 'user_id'
        group by m.anonymous_id""")
    assert per_device
    for anonymous_id, customers, profiles in per_device:
        assert customers == profiles >= 2, anonymous_id


def test_every_merge_is_explained(world: Path) -> None:
    # a profile with n graph members needs at least n - 1 merges to connect them
    short = q(world, """
        with members as (
            select profile_id, count(*) as n from identity_map
            where resolution = 'graph' group by profile_id),
        merges as (select profile_id, count(*) as n from identity_merges group by profile_id)
        select m.profile_id from members m left join merges g using (profile_id)
        where coalesce(g.n, 0) < m.n - 1""")
    assert short == []
    sources = {s for (s,) in q(world, "select distinct source from identity_merges")}
    assert sources == {"events", "orders", "crm"}


def test_rebuild_keeps_profile_ids(
    world: Path, module_dir: Path, identity: SimpleNamespace
) -> None:
    before = identity.read_map(world)
    identity.build(world, module_dir, command="run", upstream=False)
    assert identity.read_map(world) == before


def test_new_customer_leaves_existing_profiles_alone(
    world: Path, module_dir: Path, identity: SimpleNamespace
) -> None:
    before = identity.read_map(world)
    with duckdb.connect(str(world)) as con:
        con.execute("""
            insert into raw.events (message_id, type, user_id, anonymous_id, traits,
                                    "timestamp", received_at)
            values ('new-customer-1', 'identify', 'usr_newcomer', 'anon-newcomer',
                    '{"email": "Newcomer@Example.net", "phone": "+1 415 555 0199"}',
                    '2025-02-28 10:00:00', '2025-02-28 10:00:01')""")
    identity.build(world, module_dir, command="run")  # staging too: a raw row was added
    after = identity.read_map(world)
    assert {k: after.get(k) for k in before} == before
    new = {k: v for k, v in after.items() if k not in before}
    assert set(new) == {
        ("user_id", "usr_newcomer"), ("anonymous_id", "anon-newcomer"),
        ("email", "newcomer@example.net"), ("phone", "+14155550199")}
    assert len(set(new.values())) == 1 and not set(new.values()) & set(before.values())
