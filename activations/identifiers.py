"""Identifier normalization and hashing, per the rules each ad platform publishes.

Meta and Google both match on SHA-256 of a *normalized* value, and their normalizations differ
(the classic silent bug: Meta wants the phone as digits without '+', Google wants E.164 with '+').
A wrong normalization never fails loudly: the vendor accepts the hash and simply matches no one.
So every rule here cites its source, and tests/activations/test_identifiers.py checks the
published example hashes.

Functions return None for a value that cannot be normalized (blank, not an email, not a
possible phone number): callers reject such records locally instead of sending a hash that
cannot match.

Sources:
- Meta: developers.facebook.com/docs/marketing-api/conversions-api/parameters/
  customer-information-parameters (examples with expected SHA-256), the Custom Audience
  customer-file rules (/work/shared/destinations.md §3.7), and Meta's own SDK
  facebook-python-business-sdk `adobjects/serverside/normalize.py` for ct/st/zp/country.
- Google: developers.google.com/data-manager/api/get-started/formatting (the formatting page
  Google points Customer Match uploads to) and the Customer Match UserIdentifier proto comments
  (destinations.md §3.8).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import phonenumbers

_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# Deliberately loose: one '@', something on both sides, a dot in the domain. The vendor is the
# judge of deliverability; this only keeps obvious garbage from being hashed and sent.
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_WHITESPACE = re.compile(r"\s+")
# Meta SDK normalize.py: city and state drop digits, dots, whitespace, hyphens and parentheses.
_META_LOCATION_EXCLUDED = re.compile(r"[0-9.\s\-()]")
_NON_AZ = re.compile(r"[^a-z]")
_GOOGLE_PREFIXES = ("mr.", "mrs.", "ms.", "miss", "dr.", "mr", "mrs", "ms", "dr")
_GOOGLE_SUFFIXES = ("jr.", "sr.", "jr", "sr", "ii", "iii", "iv")


def sha256_hex(value: str) -> str:
    """SHA-256 of the UTF-8 bytes, lowercase hex (what Meta and Google both expect)."""
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_sha256_hex(value: str) -> bool:
    """Whether a value already is a lowercase SHA-256 hex digest (pre-hashed upstream)."""
    return bool(_SHA256_HEX.match(value))


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = unicodedata.normalize("NFC", str(value)).strip()
    return text or None


def normalize_email(value: object) -> str | None:
    """Trimmed, lower-cased email, or None if it is blank or not shaped like an email."""
    text = _clean(value)
    if text is None:
        return None
    text = text.lower()
    return text if _EMAIL.match(text) else None


def normalize_phone_e164(value: object, default_region: str | None = "US") -> str | None:
    """E.164 (`+15551234567`), or None if the value is not a possible phone number.

    `default_region` (ISO alpha-2) applies only to numbers written without a country code,
    as dbt's `default_phone_country` var does for staging. Possible (right length for the
    country), not valid (assigned range): the vendor decides who matches, and test and
    fictional ranges must still round-trip.
    """
    text = _clean(value)
    if text is None:
        return None
    try:
        number = phonenumbers.parse(text, (default_region or "").upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- Meta -----------------------------------------------------------------------------------

# Meta customer-file schema keys this module knows how to normalize.
META_KEYS: tuple[str, ...] = (
    "EMAIL", "PHONE", "FN", "LN", "CT", "ST", "ZIP", "COUNTRY", "GEN", "DOBY", "DOBM", "DOBD",
)
# Keys Meta takes in plain text (advertiser ids are opaque to Meta, not PII to hash).
META_UNHASHED_KEYS: frozenset[str] = frozenset({"EXTERN_ID", "MADID"})


def _meta_name(text: str) -> str | None:
    # "Lowercase only with no punctuation; special characters UTF-8": keep letters of any
    # script (Meta's own examples hash "valéry" and "정"), drop punctuation, digits, spaces.
    kept = "".join(c for c in text.lower() if unicodedata.category(c)[0] in ("L", "M"))
    return kept or None


def meta_normalize(key: str, value: object, default_region: str | None = "US") -> str | None:
    """A value normalized the way Meta hashes it for schema key `key` (EMAIL, PHONE, FN...)."""
    text = _clean(value)
    if text is None:
        return None
    key = key.upper()
    if key == "EMAIL":
        return normalize_email(text)
    if key == "PHONE":
        # Meta: "remove symbols, letters and any leading zeros; include the country code"
        # = E.164 without its '+' (published example: (650)555-1212 -> 16505551212).
        e164 = normalize_phone_e164(text, default_region)
        return e164[1:] if e164 else None
    if key in ("FN", "LN"):
        return _meta_name(text)
    if key in ("CT", "ST"):
        return _META_LOCATION_EXCLUDED.sub("", text.lower()) or None
    if key == "ZIP":
        # Lowercase, no spaces; US ZIP+4 keeps only the five-digit part (Meta SDK: split '-').
        return _WHITESPACE.sub("", text.lower()).split("-")[0] or None
    if key == "COUNTRY":
        code = _NON_AZ.sub("", text.lower())
        return code if len(code) == 2 else None
    if key == "GEN":
        g = text.lower()[:1]
        return g if g in ("m", "f") else None
    if key == "DOBY":
        return text if re.fullmatch(r"(19|20)\d\d", text) else None
    if key in ("DOBM", "DOBD"):
        if not text.isdigit() or not 1 <= int(text) <= (12 if key == "DOBM" else 31):
            return None
        return f"{int(text):02d}"
    if key in META_UNHASHED_KEYS:
        return text
    raise ValueError(f"unknown Meta schema key {key!r}; expected one of {META_KEYS}")


def meta_hash(key: str, value: object, default_region: str | None = "US") -> str | None:
    """Meta's SHA-256 of the normalized value; plain for EXTERN_ID/MADID; None if unusable.

    A value that already is a SHA-256 hex digest passes through (as Meta's SDK does), so a
    warehouse that stores hashes only still works.
    """
    text = _clean(value)
    if text is not None and is_sha256_hex(text.lower()) and key.upper() not in META_UNHASHED_KEYS:
        return text.lower()
    normalized = meta_normalize(key, value, default_region)
    if normalized is None:
        return None
    return normalized if key.upper() in META_UNHASHED_KEYS else sha256_hex(normalized)


# --- Google ---------------------------------------------------------------------------------


def google_normalize_email(value: object, canonicalize_gmail: bool = False) -> str | None:
    """Lowercase, all whitespace removed (leading, trailing and intermediate).

    `canonicalize_gmail` also drops dots and a '+suffix' in gmail.com/googlemail.com local
    parts, which the Data Manager API formatting page asks for; the Google Ads API Customer
    Match pages only ask for trim + lowercase, so it is off unless the sync opts in.
    """
    text = _clean(value)
    if text is None:
        return None
    email = normalize_email(_WHITESPACE.sub("", text))
    if email is None or not canonicalize_gmail:
        return email
    local, _, domain = email.partition("@")
    if domain in ("gmail.com", "googlemail.com"):
        local = local.split("+", 1)[0].replace(".", "")
        if not local:
            return None
        email = f"{local}@{domain}"
    return email


def google_normalize_phone(value: object, default_region: str | None = "US") -> str | None:
    """E.164 WITH the '+' (Google: "(800)555-0100 must be normalized to +18005550100")."""
    return normalize_phone_e164(value, default_region)


def _google_name(value: object, drop: tuple[str, ...], at_start: bool) -> str | None:
    text = _clean(value)
    if text is None:
        return None
    words = _WHITESPACE.sub(" ", text.lower()).split(" ")
    # Google: "Don't include prefixes such as Mrs." / "suffixes such as Jr.".
    if len(words) > 1 and (words[0] if at_start else words[-1]) in drop:
        words = words[1:] if at_start else words[:-1]
    return " ".join(words) or None


def google_normalize_first_name(value: object) -> str | None:
    """Lowercase, trimmed, without a leading honorific (Mr., Mrs., Dr. ...)."""
    return _google_name(value, _GOOGLE_PREFIXES, at_start=True)


def google_normalize_last_name(value: object) -> str | None:
    """Lowercase, trimmed, without a trailing suffix (Jr., Sr., III ...)."""
    return _google_name(value, _GOOGLE_SUFFIXES, at_start=False)


def google_hash(normalized: str | None) -> str | None:
    """SHA-256 hex of an already normalized value (None stays None; hashes pass through)."""
    if normalized is None:
        return None
    return normalized if is_sha256_hex(normalized) else sha256_hex(normalized)


def google_country_code(value: object) -> str | None:
    """ISO-3166-1 alpha-2, upper case, NOT hashed (Google sends countryCode in plain text)."""
    text = _clean(value)
    if text is None:
        return None
    code = re.sub(r"[^A-Z]", "", text.upper())
    return code if len(code) == 2 else None


def google_postal_code(value: object) -> str | None:
    """Trimmed postal code, NOT hashed (Google sends postalCode in plain text)."""
    return _clean(value)


def google_hashed_email(value: object, canonicalize_gmail: bool = False) -> str | None:
    """Google's hashedEmail: a pre-hashed value passes through, else normalize then SHA-256."""
    text = _clean(value)
    if text is not None and is_sha256_hex(text.lower()):
        return text.lower()
    return google_hash(google_normalize_email(value, canonicalize_gmail))


def google_hashed_phone(value: object, default_region: str | None = "US") -> str | None:
    """Google's hashedPhoneNumber: SHA-256 of E.164 with '+' (pre-hashed passes through)."""
    text = _clean(value)
    if text is not None and is_sha256_hex(text.lower()):
        return text.lower()
    return google_hash(google_normalize_phone(value, default_region))
