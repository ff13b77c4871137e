"""The demo world generator: deterministic, dirty on purpose and counted, with achievable truth."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from pathlib import Path

import duckdb
import phonenumbers
import pytest

from headwater.demo import WorldStats, generate_world
from headwater.demo.catalog import PLACEHOLDER_EMAILS, PLACEHOLDER_PHONES

AS_OF = datetime(2025, 6, 1, 12, 0, 0)
CUSTOMERS = 600


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[duckdb.DuckDBPyConnection, WorldStats]:
    path = tmp_path_factory.mktemp("demo") / "world.duckdb"
    con = duckdb.connect(str(path))
    stats = generate_world(con, customers=CUSTOMERS, seed=3, as_of=AS_OF)
    yield con, stats
    con.close()


def _digest(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, str]:
    return con.execute(f"""
        select count(*), md5(string_agg(r, '|' order by r))
        from (select cast(t as varchar) as r from {table} t)
    """).fetchone()


def _fresh(tmp_path: Path, seed: int, name: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(tmp_path / name))
    generate_world(con, customers=200, seed=seed, as_of=AS_OF)
    return con


def test_same_seed_same_world_other_seed_other_world(tmp_path: Path) -> None:
    a, b, c = _fresh(tmp_path, 5, "a.duckdb"), _fresh(tmp_path, 5, "b.duckdb"), \
        _fresh(tmp_path, 6, "c.duckdb")
    tables = ["raw.events", "raw.orders", "raw.crm_contacts", "raw.consent",
              "demo_truth.identifiers", "demo_truth.customers"]
    for table in tables:
        assert _digest(a, table) == _digest(b, table), table
    assert _digest(a, "raw.events") != _digest(c, "raw.events")


def test_counts_match_stats_and_volume_is_plausible(world) -> None:
    con, stats = world
    for table, count in stats.raw_rows.items():
        assert con.execute(f"select count(*) from raw.{table}").fetchone()[0] == count
    per_customer = stats.raw_rows["events"] / CUSTOMERS
    assert 5 <= per_customer <= 10, per_customer
    types = dict(con.execute("select type, count(*) from raw.events group by all").fetchall())
    assert {"track", "identify", "page", "screen", "alias"} <= set(types)
    events = dict(con.execute(
        "select event, count(*) from raw.events where type = 'track' group by all").fetchall())
    for name in ("Product Viewed", "Product Added", "Checkout Started", "Order Completed"):
        assert events.get(name, 0) > 0, name
    assert stats.facts["guest_orders"] > 0
    assert con.execute("select count(*) from raw.orders where user_id is null").fetchone()[0] > 0


def test_every_kind_of_dirt_is_present(world) -> None:
    con, stats = world
    for kind, count in stats.dirt.items():
        assert count > 0, kind
    for fmt in ("e164", "paren", "dots", "intl_spaced", "intl_00", "national", "trunk_dashes"):
        assert stats.phone_formats.get(fmt, 0) > 0, fmt
    # Placeholders are shared by many customers, not one.
    users = con.execute("""
        select count(distinct coalesce(user_id, anonymous_id)) from raw.events
        where json_extract_string(traits, '$.email') in ('test@test.com', 'noemail@example.com')
    """).fetchone()[0]
    assert users >= 5
    # Shared devices: each used by 2+ customers who are logged in on it.
    shared = con.execute("""
        select s.anonymous_id, count(distinct e.user_id)
        from demo_truth.shared_devices s join raw.events e using (anonymous_id)
        group by all
    """).fetchall()
    assert shared and all(users >= 2 for _, users in shared)
    # Malformed rows exist as counted.
    assert con.execute("select count(*) from raw.events where message_id is null").fetchone()[0] \
        == stats.dirt["events_missing_message_id"]
    assert con.execute("select count(*) from raw.orders where total < 0").fetchone()[0] \
        == stats.dirt["orders_negative_total"]
    dup = con.execute("""
        select count(*) - count(distinct message_id) from raw.events where message_id is not null
    """).fetchone()[0]
    assert dup == stats.dirt["events_exact_duplicate"] + stats.dirt["events_conflicting_duplicate"]


def test_truth_is_normalized_disjoint_and_free_of_placeholders(world) -> None:
    con, _ = world
    rows = con.execute("select customer_id, identifier_type, identifier_value "
                       "from demo_truth.identifiers").fetchall()
    owners: dict[tuple[str, str], set[str]] = defaultdict(set)
    for customer, kind, value in rows:
        owners[(kind, value)].add(customer)
        if kind == "email":
            assert value == value.strip().lower() and "@" in value
            assert value not in PLACEHOLDER_EMAILS
        if kind == "phone":
            assert phonenumbers.is_valid_number(phonenumbers.parse(value)), value
            assert value == phonenumbers.format_number(
                phonenumbers.parse(value), phonenumbers.PhoneNumberFormat.E164)
    assert all(len(c) == 1 for c in owners.values()), "an identifier belongs to two customers"
    shared = _shared_devices(con)
    assert not shared & {v for (k, v) in owners if k == "anonymous_id"}
    per_customer = con.execute("""
        select count(*) filter (where n_email = 0 or n_anon = 0) from (
            select customer_id, count(*) filter (where identifier_type = 'email') as n_email,
                   count(*) filter (where identifier_type = 'anonymous_id') as n_anon
            from demo_truth.identifiers group by all)
    """).fetchone()[0]
    assert per_customer == 0
    assert con.execute("select count(*) from demo_truth.customers").fetchone()[0] == CUSTOMERS


def _shared_devices(con: duckdb.DuckDBPyConnection) -> set[str]:
    rows = con.execute("select anonymous_id from demo_truth.shared_devices").fetchall()
    return {r[0] for r in rows}


def _norm_email(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    return v if "@" in v and v not in PLACEHOLDER_EMAILS else None


def _norm_phone(value: str | None, country: str | None) -> str | None:
    if value is None or value.strip() in PLACEHOLDER_PHONES:
        return None
    v = value.strip()
    v = "+" + v[2:] if v.startswith("00") else v
    try:
        number = phonenumbers.parse(v, country or "US")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def test_identity_truth_is_achievable_from_cooccurrence(world) -> None:
    """Union-find over the raw records (normalized independently, with libphonenumber) gives
    exactly the truth: one component per customer, holding all of its identifiers and no
    identifier that the truth does not list."""
    con, _ = world
    shared = _shared_devices(con)
    records: list[list[tuple[str, str]]] = []
    for user_id, anon, prev, email, phone, country in con.execute("""
        select user_id, anonymous_id, previous_id, json_extract_string(traits, '$.email'),
               json_extract_string(traits, '$.phone'),
               json_extract_string(traits, '$.address.country')
        from raw.events where message_id is not null
    """).fetchall():
        records.append([("user_id", user_id), ("anonymous_id", anon), ("anonymous_id", prev),
                        ("email", _norm_email(email)), ("phone", _norm_phone(phone, country))])
    for email, phone, user_id in con.execute(
            "select customer_email, customer_phone, user_id from raw.orders").fetchall():
        records.append([("email", _norm_email(email)), ("phone", _norm_phone(phone, None)),
                        ("user_id", user_id)])
    for contact, email, phone in con.execute(
            "select contact_id, email, phone from raw.crm_contacts").fetchall():
        records.append([("crm_contact_id", contact), ("email", _norm_email(email)),
                        ("phone", _norm_phone(phone, None))])

    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def find(x: tuple[str, str]) -> tuple[str, str]:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for record in records:
        ids = [i for i in record
               if i[1] is not None and not (i[0] == "anonymous_id" and i[1] in shared)]
        for other in ids[1:]:
            parent[find(ids[0])] = find(other)
        for i in ids:
            find(i)

    truth: dict[tuple[str, str], str] = {
        (k, v): c for c, k, v in con.execute(
            "select customer_id, identifier_type, identifier_value from demo_truth.identifiers"
        ).fetchall()
    }
    assert set(parent) == set(truth), "raw identifiers and truth identifiers differ"
    components: dict[tuple[str, str], set[str]] = defaultdict(set)
    for ident, customer in truth.items():
        components[find(ident)].add(customer)
    assert all(len(c) == 1 for c in components.values()), "two customers share a component"
    assert len(components) == CUSTOMERS


def test_behaviour_carries_signal(world) -> None:
    con, stats = world
    corr_engagement, corr_affinity = con.execute("""
        select corr(orders, engagement), corr(orders, buy_affinity) from demo_truth.customers
    """).fetchone()
    assert corr_engagement > 0.1 and corr_affinity > 0.1
    # Churned customers stop coming back; active ones have recent activity.
    late = con.execute("""
        select count(*) from raw.events e
        join demo_truth.customers c on c.user_id = e.user_id
        where c.churned and e."timestamp" > c.last_active_at + interval 1 hour
    """).fetchone()[0]
    assert late == 0
    tier_orders = dict(con.execute("""
        select loyalty_tier, avg(orders) from demo_truth.customers
        where loyalty_tier is not null group by all
    """).fetchall())
    assert tier_orders["platinum"] > tier_orders["bronze"]
    # Recent open carts for cart-abandonment audiences.
    open_carts = con.execute(f"""
        select count(*) from demo_truth.customers
        where open_cart_at between timestamp '{AS_OF}' - interval 3 day and timestamp '{AS_OF}'
    """).fetchone()[0]
    assert open_carts == stats.facts["open_carts"] > 0
    assert con.execute(f"""
        select count(*) from raw.events where "timestamp" > timestamp '{AS_OF}'
    """).fetchone()[0] == 0


def test_too_small_a_world_is_refused_with_a_hint(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "small.duckdb"))
    with pytest.raises(ValueError, match="at least 10 customers"):
        generate_world(con, customers=3, seed=1, as_of=AS_OF)
