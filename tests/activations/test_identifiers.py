"""Normalization and hashing per platform, checked against the platforms' published examples.

Two kinds of vectors:
- PUBLISHED: the input, normalized form and expected SHA-256 exactly as the vendor prints them.
- DERIVED: the vendor publishes the rule (and often the normalized form) but no hash; the
  expected hash is computed here with hashlib from the documented normalized form, so the test
  checks our normalization, not our hashing against itself.
"""

from __future__ import annotations

import hashlib

import pytest

from activations import identifiers as ids

META_CAPI = (
    "developers.facebook.com/docs/marketing-api/conversions-api/parameters/"
    "customer-information-parameters"
)


def h(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# (case id, schema key, input, expected hash) — expected hashes copied from META_CAPI.
META_PUBLISHED = [
    # META_CAPI "em": John_Smith@gmail.com -> john_smith@gmail.com
    ("email", "EMAIL", "John_Smith@gmail.com",
     "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"),
    # META_CAPI "ph": US phone number (650)555-1212 -> 16505551212 (country code, no '+')
    ("phone_us", "PHONE", "(650)555-1212",
     "e323ec626319ca94ee8bff2e4c87cf613be6ea19919ed1364124e16807ab3176"),
    # META_CAPI "fn": Mary -> mary
    ("first_name_ascii", "FN", "Mary",
     "6915771be1c5aa0c886870b6951b03d7eafc121fea0e80a5ea83beb7c449f4ec"),
    # META_CAPI "fn": 정 -> UTF-8 "정"
    ("first_name_hangul", "FN", "정",
     "8fa8cd9c440be61d0151429310034083132b35975c4bea67fdd74158eb51db14"),
    # META_CAPI "fn": Valéry -> valéry (accents kept, UTF-8)
    ("first_name_accent", "FN", "Valéry",
     "08e1996b5dd49e62a4b4c010d44e4345592a863bb9f8e3976219bac29417149c"),
]


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [c[1:] for c in META_PUBLISHED],
    ids=[c[0] for c in META_PUBLISHED],
)
def test_meta_matches_published_examples(key: str, raw: str, expected: str) -> None:
    assert ids.meta_hash(key, raw) == expected


# (case id, key, input, documented normalized form, region). Rules: destinations.md §3.7 and
# Meta's SDK normalize.py (ct/st drop digits, dots, spaces, hyphens; zp before '-').
META_DERIVED = [
    ("email_trimmed", "EMAIL", "  Jane.Doe@Example.COM ", "jane.doe@example.com", "US"),
    ("phone_e164_plus_dropped", "PHONE", "+1 650-555-1234", "16505551234", "US"),
    ("phone_uk_leading_zero", "PHONE", "020 7946 0958", "442079460958", "GB"),
    ("phone_intl_prefix_00", "PHONE", "0044 20 7946 0958", "442079460958", "GB"),
    ("last_name_punctuation", "LN", "O'Brien-Smith", "obriensmith", "US"),
    ("city_spaces", "CT", "Menlo Park", "menlopark", "US"),
    ("state_code", "ST", "CA", "ca", "US"),
    ("zip_plus4", "ZIP", "94035-1234", "94035", "US"),
    ("zip_uk_space", "ZIP", "SW1A 1AA", "sw1a1aa", "GB"),
    ("country", "COUNTRY", "US", "us", "US"),
    ("gender", "GEN", "Female", "f", "US"),
    ("dob_month_padded", "DOBM", "2", "02", "US"),
]


@pytest.mark.parametrize(
    ("key", "raw", "normalized", "region"),
    [c[1:] for c in META_DERIVED],
    ids=[c[0] for c in META_DERIVED],
)
def test_meta_normalization_rules(key: str, raw: str, normalized: str, region: str) -> None:
    assert ids.meta_normalize(key, raw, region) == normalized
    assert ids.meta_hash(key, raw, region) == h(normalized)


@pytest.mark.parametrize(
    ("key", "raw"),
    [("EMAIL", "not-an-email"), ("EMAIL", "   "), ("PHONE", "12"), ("COUNTRY", "USA"),
     ("FN", "123"), ("GEN", "x"), ("DOBM", "13")],
    ids=["email_garbage", "email_blank", "phone_too_short", "country_alpha3", "name_digits",
         "gender_unknown", "month_13"],
)
def test_meta_unusable_values_are_none(key: str, raw: str) -> None:
    assert ids.meta_hash(key, raw) is None


def test_meta_extern_id_is_not_hashed_and_prehashed_passes_through() -> None:
    assert ids.meta_hash("EXTERN_ID", " crm-42 ") == "crm-42"
    digest = h("someone@example.com")
    assert ids.meta_hash("EMAIL", digest.upper()) == digest


# Google: developers.google.com/data-manager/api/get-started/formatting publishes normalized
# forms (no hashes); expected hashes are hashlib over those forms.
GOOGLE_EMAIL = [
    # Published: "user.name+NYC@Example.com -> user.name+nyc@example.com" (non-gmail kept).
    ("non_gmail_keeps_dots_plus", "user.name+NYC@Example.com", False, "user.name+nyc@example.com"),
    # Published: "cloudy.sanfrancisco+shopping@gmail.com -> cloudysanfrancisco@gmail.com".
    ("gmail_canonical", "cloudy.sanfrancisco+shopping@gmail.com", True,
     "cloudysanfrancisco@gmail.com"),
    # Default (Google Ads API Customer Match: trim + lowercase only).
    ("gmail_default_untouched", " Cloudy.SF@gmail.com ", False, "cloudy.sf@gmail.com"),
    # Same page: "trim leading, trailing and intermediate whitespace".
    ("intermediate_whitespace", "jane @ example.com", False, "jane@example.com"),
]


@pytest.mark.parametrize(
    ("raw", "gmail", "normalized"),
    [c[1:] for c in GOOGLE_EMAIL],
    ids=[c[0] for c in GOOGLE_EMAIL],
)
def test_google_email(raw: str, gmail: bool, normalized: str) -> None:
    assert ids.google_normalize_email(raw, canonicalize_gmail=gmail) == normalized
    assert ids.google_hashed_email(raw, canonicalize_gmail=gmail) == h(normalized)


GOOGLE_PHONE = [
    # Published: "(800)555-0100 must be formatted and normalized to +18005550100".
    ("us_published", "(800)555-0100", "US", "+18005550100"),
    ("already_e164", "+442079460958", "US", "+442079460958"),
    ("uk_national", "020 7946 0958", "GB", "+442079460958"),
]


@pytest.mark.parametrize(
    ("raw", "region", "normalized"),
    [c[1:] for c in GOOGLE_PHONE],
    ids=[c[0] for c in GOOGLE_PHONE],
)
def test_google_phone_keeps_plus(raw: str, region: str, normalized: str) -> None:
    assert ids.google_normalize_phone(raw, region) == normalized
    assert ids.google_hashed_phone(raw, region) == h(normalized)


def test_meta_and_google_phone_hashes_differ_for_the_same_number() -> None:
    # The one difference that silently zeroes a match rate if mixed up.
    meta = ids.meta_hash("PHONE", "(800)555-0100")
    google = ids.google_hashed_phone("(800)555-0100")
    assert meta == h("18005550100")
    assert google == h("+18005550100")
    assert meta != google


@pytest.mark.parametrize(
    ("fn", "raw", "normalized"),
    [
        # Data Manager formatting page: lowercase, "Don't include prefixes such as Mrs."
        (ids.google_normalize_first_name, "  Mrs. Jane ", "jane"),
        (ids.google_normalize_first_name, "Mary Ann", "mary ann"),
        # Same page: "Don't include suffixes such as Jr."
        (ids.google_normalize_last_name, "Doe Jr.", "doe"),
        (ids.google_normalize_last_name, "DOE", "doe"),
    ],
    ids=["first_prefix_dropped", "first_two_words", "last_suffix_dropped", "last_lower"],
)
def test_google_names(fn, raw: str, normalized: str) -> None:  # type: ignore[no-untyped-def]
    assert fn(raw) == normalized


def test_google_geo_is_plain_text() -> None:
    # Customer Match AddressInfo: countryCode and postalCode are sent unhashed.
    assert ids.google_country_code(" us ") == "US"
    assert ids.google_postal_code(" 94035 ") == "94035"


@pytest.mark.parametrize(
    ("raw", "region", "expected"),
    [("(650) 555-1212", "US", "+16505551212"), ("+33 1 42 68 53 00", "US", "+33142685300"),
     ("call me", "US", None), ("", "US", None), ("5551212", None, None)],
    ids=["us_national", "fr_international", "letters", "blank", "no_region_no_cc"],
)
def test_normalize_phone_e164(raw: str, region: str | None, expected: str | None) -> None:
    assert ids.normalize_phone_e164(raw, region) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(" A@B.CO ", "a@b.co"), ("no-at.example.com", None), ("a@@b.com", None), (None, None)],
    ids=["trim_lower", "no_at", "double_at", "none"],
)
def test_normalize_email(raw: str | None, expected: str | None) -> None:
    assert ids.normalize_email(raw) == expected
