"""Fixed vocabularies of the demo world: names, products, countries and their phone plans.

Phone numbers are built from prefixes that libphonenumber (the `phonenumbers` package) accepts as
valid for their country, so that the staging normalizer is tested on numbers a real system sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import phonenumbers

FIRST_NAMES = np.array(
    ["Olivia", "Liam", "Emma", "Noah", "Amelia", "Oliver", "Ava", "Elijah", "Sophia", "James",
     "Isabella", "William", "Mia", "Benjamin", "Charlotte", "Lucas", "Harper", "Henry",
     "Evelyn", "Theodore", "Aria", "Jack", "Luna", "Levi", "Chloe", "Alexander", "Ella",
     "Jackson", "Grace", "Mateo", "Zoe", "Daniel", "Nora", "Michael", "Lily", "Mason",
     "Hannah", "Sebastian", "Emily", "Ethan", "Léa", "Lukas", "Marie", "Finn", "Sophie",
     "Hugo", "Chloé", "Louis", "Ruby", "Oscar", "Matilda", "Arthur", "Isla", "Freddie",
     "Aisha", "Ravi", "Mei", "Kenji"]
)
LAST_NAMES = np.array(
    ["Smith", "Johnson", "Williams", "Brown", "Jones", "Garcia", "Miller", "Davis",
     "Rodriguez", "Martinez", "Hernandez", "Lopez", "Gonzalez", "Wilson", "Anderson", "Thomas",
     "Taylor", "Moore", "Jackson", "Martin", "Lee", "Perez", "Thompson", "White", "Harris",
     "Sanchez", "Clark", "Ramirez", "Lewis", "Robinson", "Walker", "Young", "Allen", "King",
     "Wright", "Scott", "Torres", "Nguyen", "Hill", "Müller", "Schmidt", "Schneider",
     "Fischer", "Weber", "Dubois", "Laurent", "Bernard", "Moreau", "Patel", "Khan", "Evans",
     "Wood", "Hughes", "Edwards", "O'Brien", "Kelly", "Murphy", "Chen", "Wang", "Singh"]
)
EMAIL_DOMAINS = np.array(
    ["gmail.com", "yahoo.com", "outlook.com", "icloud.com", "hotmail.com", "proton.me",
     "gmx.de", "orange.fr", "btinternet.com", "bigpond.com", "example.org"]
)

# Placeholders that forms and agents type when they have nothing: many customers share them.
# Email-shaped ones survive normalization (identity resolution must block them); the others
# normalize to null.
PLACEHOLDER_EMAILS = ("test@test.com", "noemail@example.com", "unknown", "n/a", "null")
PLACEHOLDER_PHONES = ("0000000000", "unknown", "n/a", "null")

PRODUCTS: list[tuple[str, str, float]] = [
    (f"SKU-{i:04d}", f"{adj} {noun}", price)
    for i, (adj, noun, price) in enumerate(
        (adj, noun, round(9.0 + ((i * 37) % 180) + 0.99, 2))
        for i, (adj, noun) in enumerate(
            (a, n)
            for a in ("Classic", "Trail", "Urban", "Merino", "Rain", "Summit", "Coastal", "Alpine")
            for n in ("Jacket", "Tee", "Hoodie", "Beanie", "Backpack", "Socks", "Boots",
                      "Shorts", "Fleece", "Cap")
        )
    )
]

CURRENCY_BY_COUNTRY = {"US": "USD", "CA": "CAD", "GB": "GBP", "DE": "EUR", "FR": "EUR", "AU": "AUD"}
LOCALE_BY_COUNTRY = {"US": "en-US", "CA": "en-CA", "GB": "en-GB", "DE": "de-DE", "FR": "fr-FR",
                     "AU": "en-AU"}


@dataclass(frozen=True)
class PhonePlan:
    """Valid mobile/landline ranges of one country: prefix + `digits` free subscriber digits."""

    country: str
    calling_code: str
    prefixes: tuple[str, ...]
    digits: int
    # NANP subscriber numbers cannot start with 0 or 1 (the exchange code starts with 2-9).
    first_digit_min: int = 0

    @property
    def space(self) -> int:
        return (10 - self.first_digit_min) * 10 ** (self.digits - 1)

    def check(self) -> None:
        """Fail loudly if a range is not valid according to libphonenumber."""
        low = str(self.first_digit_min) + "0" * (self.digits - 1)
        for prefix in self.prefixes:
            for sub in (low, "9" * self.digits, low[:1] + "4" * (self.digits - 1)):
                number = phonenumbers.parse(f"+{self.calling_code}{prefix}{sub}")
                if not phonenumbers.is_valid_number(number):
                    raise ValueError(f"demo phone plan {self.country}: +{self.calling_code}"
                                     f"{prefix}{sub} is not a valid number")


# Shares sum to 1; order matters for determinism.
COUNTRIES: tuple[tuple[str, float], ...] = (
    ("US", 0.55), ("GB", 0.15), ("DE", 0.09), ("FR", 0.08), ("CA", 0.07), ("AU", 0.06),
)

PHONE_PLANS: dict[str, tuple[PhonePlan, ...]] = {
    "US": (PhonePlan("US", "1", ("201", "202", "206", "212", "303", "305", "312", "404", "415",
                                 "503", "512", "617", "646", "702", "713", "718", "818", "917"),
                     7, first_digit_min=2),),
    "CA": (PhonePlan("CA", "1", ("416", "604", "514", "403", "613", "647", "905"), 7,
                     first_digit_min=2),),
    "GB": (PhonePlan("GB", "44", ("7400", "7412", "7440", "7500", "7507", "7710", "7800", "7810",
                                  "7920", "7930", "7460", "7380"), 6),
           PhonePlan("GB", "44", ("203", "207", "208"), 7)),
    "DE": (PhonePlan("DE", "49", ("151", "152", "157", "176", "177"), 8),),
    "FR": (PhonePlan("FR", "33", ("60", "61", "62", "64", "65", "66", "67", "68"), 7),),
    "AU": (PhonePlan("AU", "61", ("41", "42", "43", "46"), 7),),
}


def phone_numbers(country: str, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct national significant numbers (digits, no trunk prefix) for `country`.

    Distinct by construction: the k-th number takes prefix k mod P and subscriber number
    (k div P) * A + B mod S, a bijection for A coprime with S, so no two customers share a phone
    by accident (shared phones would be a kind of dirt of their own).
    """
    plans = PHONE_PLANS[country]
    for plan in plans:
        plan.check()
    slots = [(plan, prefix) for plan in plans for prefix in plan.prefixes]
    k = np.arange(count, dtype=np.int64)
    slot = k % len(slots)
    rank = k // len(slots)
    out = np.empty(count, dtype=object)
    offset = int(rng.integers(0, 1_000_000))
    for i, (plan, prefix) in enumerate(slots):
        mask = slot == i
        if not mask.any():
            continue
        sub = (rank[mask] * 7_919 + offset) % plan.space
        sub = sub + plan.first_digit_min * 10 ** (plan.digits - 1)
        out[mask] = np.char.add(prefix, np.char.zfill(sub.astype(str), plan.digits))
    return out
