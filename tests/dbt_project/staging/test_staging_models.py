"""Staging on a real DuckDB file built by real dbt: a small demo world plus hand-written raw rows
whose normalized value, quarantine reason or dedup outcome is known."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pytest

from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.demo import WorldStats, generate_world

AS_OF = datetime(2025, 6, 1, 12, 0, 0)

# raw phone, traits.address.country (None: none given, default US), expected E.164 or None
PHONES: list[tuple[str, str | None, str | None]] = [
    ("(415) 555-0101", None, "+14155550101"),
    ("415.555.0101", None, "+14155550101"),
    ("+1 415 555 0101", None, "+14155550101"),
    ("1-415-555-0101", None, "+14155550101"),
    ("4155550101", None, "+14155550101"),
    ("  +14155550101 ", None, "+14155550101"),
    ("011 44 20 7946 0958", None, "+442079460958"),
    ("0044 20 7946 0958", None, "+442079460958"),
    ("+44 20 7946 0958", None, "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("07400 123456", "gb", "+447400123456"),
    ("020 7946 0958", None, None),  # a UK national number read as US: not a number
    ("0151 23456789", "DE", "+4915123456789"),
    ("+49 (0)151 23456789", None, None),  # the (0) makes it ambiguous: rejected, not guessed
    ("06 12 34 56 78", "FR", "+33612345678"),
    ("0412 345 678", "AU", "+61412345678"),
    ("+61 412 345 678", None, "+61412345678"),
    ("(416) 555-0199", "CA", "+14165550199"),
    ("0000000000", None, None),
    ("12345", None, None),
    ("+1 415 555 01011234", None, None),
    ("unknown", None, None),
    ("n/a", None, None),
    ("", None, None),
]

EMAILS: list[tuple[str, str | None]] = [
    ("  Jane.Doe@Example.COM ", "jane.doe@example.com"),
    ("JOHN@SHOP.CO.UK", "john@shop.co.uk"),
    ("test@test.com", "test@test.com"),  # placeholders stay: identity owns the blocklist
    ("unknown", None),
    ("null", None),
    ("n/a", None),
    ("   ", None),
    ("no-at-sign.example.com", None),
]


def _insert_hand_written_rows(con: duckdb.DuckDBPyConnection) -> None:
    ts = "timestamp '2025-05-01 10:00:00'"
    for i, (phone, country, _) in enumerate(PHONES):
        traits = {"phone": phone} | ({"address": {"country": country}} if country else {})
        con.execute(f"""insert into raw.events values
            ('hw-phone-{i}', 'identify', null, 'hw-user-{i}', null, null, ?, '{{}}', '{{}}',
             {ts}, {ts})""", [json.dumps(traits)])
    for i, (email, _) in enumerate(EMAILS):
        con.execute(f"""insert into raw.events values
            ('hw-email-{i}', 'identify', null, 'hw-user-e{i}', null, null, ?, '{{}}', '{{}}',
             {ts}, {ts})""", [json.dumps({"email": email})])
    # A conflicting duplicate: the earliest received copy wins, the other is quarantined.
    con.execute(f"""insert into raw.events values
        ('hw-dup', 'track', 'Product Viewed', 'hw-u', null, null, null, '{{"sku": "A"}}', '{{}}',
         {ts}, {ts} + interval 5 second),
        ('hw-dup', 'track', 'Product Viewed', 'hw-u', null, null, null, '{{"sku": "B"}}', '{{}}',
         {ts}, {ts} + interval 1 second),
        ('hw-dup', 'track', 'Product Viewed', 'hw-u', null, null, null, '{{"sku": "B"}}', '{{}}',
         {ts}, {ts} + interval 9 second),
        ('hw-alias', 'alias', null, 'hw-u', null, '  ', null, '{{}}', '{{}}', {ts}, {ts}),
        ('hw-case', ' Track ', 'Order Completed', null, 'hw-a', null, null,
         '{{"order_id": "hw-o1", "cart_id": "hw-c1", "revenue": "12.5", "currency": "eur",
            "products": [{{"sku": "A", "price": 12.5, "quantity": 1}}]}}', '{{}}', {ts}, {ts})
    """)
    con.execute("""insert into raw.orders values
        ('hw-o1', ' Buyer@Example.com', '(415) 555-0102', null, 12.5, 'eur', 'Completed',
         timestamp '2025-05-01 10:00:02',
         '[{"sku": "A", "name": "a", "quantity": 1, "price": 12.5}]'),
        ('hw-o2', null, 'unknown', '  ', 10, 'usd', 'completed', timestamp '2025-05-01', '[]'),
        ('hw-o3', 'a@b.co', null, null, null, 'usd', 'completed', timestamp '2025-05-01', '[]')
    """)
    con.execute("""insert into raw.crm_contacts values
        ('hw-k1', 'k@x.io', null, 'K', 'X', 'Gold ', 10, timestamp '2025-01-01'),
        ('hw-k1', 'k@x.io', null, 'K', 'X', 'silver', 5, timestamp '2024-01-01'),
        ('hw-k2', 'unknown', '0000000000', 'K', 'Y', 'bronze', 1, timestamp '2025-01-01'),
        ('hw-k3', 'k3@x.io', null, 'K', 'Z', 'diamond', 1, timestamp '2025-01-01'),
        ('hw-k3', 'k3b@x.io', null, 'K', 'Z', 'gold', 1, timestamp '2025-01-01')
    """)
    con.execute("""insert into raw.consent values
        ('Email', ' HW@Consent.io ', 'Email', true, timestamp '2025-01-01'),
        ('email', 'hw@consent.io', 'email', true, timestamp '2025-01-01'),
        ('phone', '+1 415 555 0103', 'sms', true, timestamp '2025-01-02'),
        ('phone', '+1 415 555 0103', 'sms', false, timestamp '2025-01-02'),
        ('fax_number', '123', 'sms', true, timestamp '2025-01-03'),
        ('email', 'hw2@consent.io', 'email', null, timestamp '2025-01-03')
    """)


@pytest.fixture(scope="module")
def staged(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[duckdb.DuckDBPyConnection, WorldStats]:
    tmp = tmp_path_factory.mktemp("staging")
    db = tmp / "wh.duckdb"
    con = duckdb.connect(str(db))
    stats = generate_world(con, customers=400, seed=21, as_of=AS_OF)
    _insert_hand_written_rows(con)
    con.close()
    settings = Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)})
    run_dbt("build", ["--select", "staging", "--target-path", str(tmp / "target"),
                      "--log-path", str(tmp / "logs"),
                      "--vars", json.dumps({"as_of": AS_OF.isoformat()})], settings)
    # Same configuration as dbt-duckdb's connection, which may still be open in this process.
    con = duckdb.connect(str(db))
    yield con, stats
    con.close()


def test_phones_normalize_to_e164_in_every_format(staged) -> None:
    con, _ = staged
    got = dict(con.execute(
        "select message_id, phone from stg_events where message_id like 'hw-phone-%'").fetchall())
    for i, (raw, country, expected) in enumerate(PHONES):
        assert got[f"hw-phone-{i}"] == expected, (raw, country)


def test_emails_are_trimmed_lowercased_or_null(staged) -> None:
    con, _ = staged
    got = dict(con.execute(
        "select message_id, email from stg_events where message_id like 'hw-email-%'").fetchall())
    for i, (raw, expected) in enumerate(EMAILS):
        assert got[f"hw-email-{i}"] == expected, raw


def test_every_raw_row_is_kept_collapsed_or_quarantined(staged) -> None:
    con, _ = staged
    for table, model in (("events", "stg_events"), ("orders", "stg_orders"),
                         ("crm_contacts", "stg_crm_contacts"), ("consent", "stg_consent")):
        raw, kept, collapsed, quarantined = con.execute(f"""
            select (select count(*) from raw.{table}), (select count(*) from {model}),
                (select coalesce(sum(collapsed_rows), 0) from stg_collapsed_records
                 where source_table = '{table}'),
                (select count(*) from quarantined_records where source_table = '{table}')
        """).fetchone()
        assert raw == kept + collapsed + quarantined, table
        assert kept > 0


def test_quarantine_reasons_match_the_injected_dirt(staged) -> None:
    con, stats = staged
    got = {(t, r): n for t, r, n in con.execute("""
        select source_table, reason, count(*) from quarantined_records
        where record_key not like 'hw-%' and payload not like '%hw-%' group by all
    """).fetchall()}
    d = stats.dirt
    assert got[("events", "missing_message_id")] == d["events_missing_message_id"]
    assert got[("events", "unknown_type")] == d["events_unknown_type"]
    assert got[("events", "missing_timestamp")] == d["events_missing_timestamp"]
    assert got[("events", "track_without_event")] == d["events_track_without_event"]
    assert got[("events", "missing_identity")] == d["events_missing_identity"]
    assert got[("events", "duplicate_message_id")] == d["events_conflicting_duplicate"]
    assert got[("orders", "negative_total")] == d["orders_negative_total"]
    assert got[("orders", "missing_order_id")] == d["orders_missing_order_id"]
    assert got[("crm_contacts", "missing_contact_id")] == d["crm_missing_contact_id"]
    assert got[("consent", "unknown_channel")] == d["consent_unknown_channel"]
    assert got[("consent", "invalid_identifier")] == d["consent_invalid_identifier"]
    payload = con.execute("select payload from quarantined_records limit 1").fetchone()[0]
    assert isinstance(json.loads(payload), dict)


def test_duplicates_are_counted_and_the_earliest_copy_is_kept(staged) -> None:
    con, stats = staged
    collapsed = dict(con.execute("""
        select source_table || '/' || reason, sum(collapsed_rows) from stg_collapsed_records
        where record_key not like 'hw-%' and record_key not like '%consent.io%' group by all
    """).fetchall())
    assert collapsed["events/exact_duplicate"] == stats.dirt["events_exact_duplicate"]
    assert collapsed["orders/exact_duplicate"] == stats.dirt["orders_exact_duplicate"]
    assert collapsed["crm_contacts/superseded_version"] == stats.dirt["crm_superseded_versions"]
    assert collapsed["crm_contacts/exact_duplicate"] == stats.dirt["crm_exact_duplicates"]
    assert collapsed["consent/exact_duplicate"] == stats.dirt["consent_exact_duplicate"]
    # hw-dup: copies received at +1 s (sku B), +5 s (sku A), +9 s (sku B).
    sku = con.execute("select properties->>'sku' from stg_events where message_id = 'hw-dup'"
                      ).fetchall()
    assert sku == [("B",)]
    assert con.execute("""select count(*) from quarantined_records
        where record_key = 'hw-dup' and reason = 'duplicate_message_id'""").fetchone()[0] == 1
    assert con.execute("""select collapsed_rows from stg_collapsed_records
        where record_key = 'hw-dup'""").fetchone()[0] == 1


def test_hand_written_rows_get_typed_or_quarantined(staged) -> None:
    con, _ = staged
    reasons = dict(con.execute(
        "select record_key, reason from quarantined_records where record_key like 'hw-%'"
    ).fetchall())
    assert reasons["hw-alias"] == "alias_without_previous_id"
    assert reasons["hw-o2"] == "no_identifier"
    assert reasons["hw-o3"] == "missing_total"
    assert reasons["hw-k2"] == "no_contact_identifier"
    assert reasons["hw-k3"] == "conflicting_versions"
    row = con.execute("""select message_type, event_name, revenue, currency, cart_id, order_id,
        json_array_length(products) from stg_events where message_id = 'hw-case'""").fetchone()
    assert row == ("track", "Order Completed", 12.5, "EUR", "hw-c1", "hw-o1", 1)
    order = con.execute("""select email, phone, currency, status, cart_id from stg_orders
        where order_id = 'hw-o1'""").fetchone()
    assert order == ("buyer@example.com", "+14155550102", "EUR", "completed", "hw-c1")
    crm = con.execute("select loyalty_tier, loyalty_points from stg_crm_contacts "
                      "where contact_id = 'hw-k1'").fetchone()
    assert crm == ("gold", 10)
    # Two versions stamped with the same time: one is kept (deterministically), one quarantined.
    assert con.execute("select count(*) from stg_crm_contacts where contact_id = 'hw-k3'"
                       ).fetchone()[0] == 1
    consent = con.execute("""select identifier_type, identifier_value, channel, granted
        from stg_consent where identifier_value in ('hw@consent.io', '+14155550103')
        order by all""").fetchall()
    # The two spellings of one grant collapse; of the conflicting sms pair the opt-out is kept.
    assert consent == [("email", "hw@consent.io", "email", True),
                       ("phone", "+14155550103", "sms", False)]
    consent_reasons = {r for (r,) in con.execute("""select reason from quarantined_records
        where source_table = 'consent' and payload like '%hw2@consent.io%'
           or payload like '%fax_number%' or reason = 'conflicting_consent'""").fetchall()}
    assert {"missing_granted", "unknown_identifier_type", "conflicting_consent"} <= consent_reasons


def test_staging_recovers_every_true_email_and_phone(staged) -> None:
    """Every normalized identifier of the truth is found in staging, so each dirty format the
    generator wrote was normalized back to the same value."""
    con, _ = staged
    missing = con.execute("""
        with staged as (
            select 'email' as t, email as v from stg_events
            union select 'phone', phone from stg_events
            union select 'email', email from stg_orders
            union select 'phone', phone from stg_orders
            union select 'email', email from stg_crm_contacts
            union select 'phone', phone from stg_crm_contacts
            union select 'user_id', user_id from stg_events
            union select 'anonymous_id', anonymous_id from stg_events
        )
        select i.identifier_type, i.identifier_value from demo_truth.identifiers i
        where i.identifier_type in ('email', 'phone', 'user_id', 'anonymous_id')
          and not exists (select 1 from staged s
                          where s.t = i.identifier_type and s.v = i.identifier_value)
    """).fetchall()
    assert missing == []
    # ...and no generated phone normalized to a number the truth does not know.
    strays = con.execute("""
        select phone from stg_events where phone is not null and message_id not like 'hw-%'
        except select identifier_value from demo_truth.identifiers where identifier_type = 'phone'
    """).fetchall()
    assert strays == []
    consent_unknown = con.execute("""
        select identifier_type, identifier_value from stg_consent
        where identifier_value not like '%consent.io' and identifier_value <> '+14155550103'
        except select identifier_type, identifier_value from demo_truth.identifiers
    """).fetchall()
    assert consent_unknown == []
