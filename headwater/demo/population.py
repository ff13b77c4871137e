"""Who lives in the demo world: customers, their identifiers, devices and habits (numpy columns).

Every column is an array indexed by customer number; nothing here loops per customer, so a
million customers take about a second.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from headwater.demo.catalog import COUNTRIES, phone_numbers

DAY_US = 86_400 * 1_000_000
TIERS = np.array(["bronze", "silver", "gold", "platinum"])


@dataclass
class Population:
    """Customer columns (length n) and device columns (length n_devices)."""

    n: int
    country: np.ndarray  # str, ISO alpha-2
    first_name_idx: np.ndarray
    last_name_idx: np.ndarray
    domain_idx: np.ndarray
    has_secondary_email: np.ndarray  # bool
    has_phone: np.ndarray  # bool
    phone_nsn: np.ndarray  # str (national significant number), '' when none
    signed_up: np.ndarray  # bool: has a user_id
    engagement: np.ndarray  # float > 0: drives visit rate
    buy_affinity: np.ndarray  # float 0..1: probability a checkout completes
    churned: np.ndarray  # bool
    first_seen_us: np.ndarray  # int64 epoch microseconds
    last_active_us: np.ndarray  # int64: churn time, or as_of
    in_crm: np.ndarray  # bool
    tier_idx: np.ndarray  # int (index in TIERS), -1 when not in the CRM
    loyalty_points: np.ndarray
    device_offset: np.ndarray  # int: first device number of the customer
    n_devices: np.ndarray  # int >= 1
    device_mobile: np.ndarray  # bool per device: app (screen calls) vs web (page calls)


def build_population(n: int, rng: np.random.Generator, as_of_us: int) -> Population:
    """Draw n customers. Habits are correlated on purpose: engaged customers visit more, reach
    higher loyalty tiers and complete more checkouts, so that scores have something to learn."""
    codes = np.array([c for c, _ in COUNTRIES])
    country = codes[rng.choice(len(codes), size=n, p=[s for _, s in COUNTRIES])]
    engagement = rng.lognormal(mean=0.0, sigma=0.8, size=n)
    in_crm = rng.random(n) < 0.6
    # Loyalty tier follows engagement with noise: quartile-ish cut points on a noisy score.
    tier_score = np.log(engagement) + rng.normal(0, 0.6, n)
    tier_idx = np.digitize(tier_score, [0.0, 0.7, 1.4])
    tier_idx = np.where(in_crm, tier_idx, -1)
    points = np.where(
        in_crm, (rng.gamma(2.0, 250.0, n) * (1 + np.maximum(tier_idx, 0))).astype(np.int64), 0
    )
    noise = rng.normal(0, 0.7, n)
    buy_affinity = 1 / (1 + np.exp(-(-0.4 + 0.45 * np.maximum(tier_idx, 0)
                                     + 0.6 * np.log(engagement) + noise)))
    churned = rng.random(n) < 0.25
    churn_at = as_of_us - (rng.uniform(45, 300, n) * DAY_US).astype(np.int64)
    # Active customers keep coming until an hour before as_of (sessions last a few minutes).
    last_active = np.where(churned, churn_at, as_of_us - 3600 * 1_000_000)
    first_seen = as_of_us - (rng.uniform(20, 365, n) * DAY_US).astype(np.int64)
    first_seen = np.minimum(first_seen, last_active - 7 * DAY_US)

    has_phone = rng.random(n) < 0.8
    phone_nsn = np.full(n, "", dtype=object)
    for code in codes:
        idx = np.flatnonzero((country == code) & has_phone)
        phone_nsn[idx] = phone_numbers(str(code), len(idx), rng)

    n_devices = 1 + rng.binomial(2, 0.3, n)
    device_offset = np.concatenate([[0], np.cumsum(n_devices)[:-1]]).astype(np.int64)
    return Population(
        n=n,
        country=country,
        first_name_idx=rng.integers(0, 1 << 30, n),
        last_name_idx=rng.integers(0, 1 << 30, n),
        domain_idx=rng.integers(0, 1 << 30, n),
        has_secondary_email=rng.random(n) < 0.2,
        has_phone=has_phone,
        phone_nsn=phone_nsn,
        signed_up=rng.random(n) < 0.75,
        engagement=engagement,
        buy_affinity=buy_affinity,
        churned=churned,
        first_seen_us=first_seen,
        last_active_us=last_active,
        in_crm=in_crm,
        tier_idx=tier_idx,
        loyalty_points=points,
        device_offset=device_offset,
        n_devices=n_devices,
        device_mobile=rng.random(int(n_devices.sum())) < 0.35,
    )
