"""Holdout lift, the journey funnel and fast-path latency on a hand-made journey: the
intervals are checked against a direct computation in Python (scipy's Wilson interval and
Welch t statistic), the outcome rules (window, refunds, restarts, unknown subjects) by hand.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from measurement_world import build, identify, order
from scipy import stats

from headwater import activity

pytestmark = pytest.mark.slow

T = datetime(2026, 10, 26, 9, 0, 0)
DAY = timedelta(days=1)
TREATED, HOLDOUT = 40, 30
Z = 1.959963984540054


def _user(i: int) -> str:
    return f"t{i}" if i < TREATED else f"h{i - TREATED}"


def _outcome(i: int) -> list[float]:
    """Net revenue of each converting order subject i places inside its window."""
    if i < TREATED:
        if i == 6:
            return [10.0, 25.0]  # two orders, one subject: converted once, revenue summed
        return [20 + 1.5 * i] if i % 3 == 0 else []
    j = i - TREATED
    return [30.0 + j] if j % 5 == 0 else []


def _orders() -> list[tuple]:
    rows = []
    for i in range(TREATED + HOLDOUT):
        for n, revenue in enumerate(_outcome(i)):
            rows.append(order(f"o{i}-{n}", _user(i), revenue, T + (1 + n / 4) * DAY))
    rows.append(order("o1-refunded", _user(1), 99, T + DAY, status="refunded"))
    rows.append(order("o2-late", _user(2), 77, T + 4 * DAY))  # after the 3-day window
    rows.append(order("o5-before", _user(5), 66, T - DAY))  # before entering
    return rows


def _event(i: int, event: str, at: datetime, step: str | None = None,
           latency: float | None = None, n: int = 0) -> dict[str, Any]:
    holdout = i >= TREATED
    return {
        "event_id": f"e{i}-{event}-{step}-{n}", "journey": "winback",
        "instance_id": f"winback:{_user(i)}:{n}", "entry_key": _user(i),
        "identifier_type": "user_id", "identifier_value": _user(i), "holdout": holdout,
        "event": event, "step": step, "occurred_at": at,
        "due_at": at if step else None, "latency_ms": latency, "recorded_at": at,
    }


def latencies() -> dict[str, list[float]]:
    return {"first": [10.0 + i for i in range(TREATED) if i != 4],
            "second": [100.0 + 7 * i for i in range(TREATED) if i % 3 != 0]}


def _feed(profiles: dict[str, str], folder: Path) -> None:
    rows = []
    for i in range(TREATED + HOLDOUT):
        rows.append(_event(i, "entered", T))
        if i >= TREATED:
            rows.append(_event(i, "step_held_out", T, "first"))
            rows.append(_event(i, "step_held_out", T + 2 * DAY, "second"))
            continue
        if i == 4:
            rows.append(_event(i, "step_capped", T, "first"))
        else:
            rows.append(_event(i, "step_sent", T, "first", latency=10.0 + i))
        if i % 3 == 0:
            rows.append(_event(i, "step_skipped", T + 2 * DAY, "second"))
        else:
            rows.append(_event(i, "step_sent", T + 2 * DAY, "second", latency=100.0 + 7 * i))
    # Subject 3 restarts a day later: its order is inside both windows, counted once.
    rows.append(_event(3, "restarted", T + DAY, n=1))
    # A held-out subject nobody knows yet: a subject of its own, with no orders.
    unknown = _event(TREATED, "entered", T)
    unknown.update(event_id="e-unknown", identifier_type="anonymous_id",
                   identifier_value="anon-x", instance_id="winback:anon-x:0")
    rows.append(unknown)
    activity.append_journey_events(folder, rows)
    activity.append_journey_events(folder, rows[:5])  # copies from a crashed writer


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[duckdb.DuckDBPyConnection]:
    tmp = tmp_path_factory.mktemp("lift")
    events = [identify(_user(i), T - 30 * DAY) for i in range(TREATED + HOLDOUT)]
    con = build(tmp, events, _orders(), _feed)
    yield con
    con.close()


def _lift(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    cur = con.execute("select * from measurement_journey_lift where journey = 'winback'")
    names = [d[0] for d in cur.description]
    return dict(zip(names, cur.fetchone(), strict=True))


def _groups() -> tuple[list[float], list[float]]:
    treated = [sum(_outcome(i)) for i in range(TREATED)]
    holdout = [sum(_outcome(i)) for i in range(TREATED, TREATED + HOLDOUT)] + [0.0]  # anon-x
    return treated, holdout


def test_subjects_and_outcomes(warehouse) -> None:
    rows = {r[0]: r[1:] for r in warehouse.execute(
        "select subject, holdout, entries, converted, conversions, revenue "
        "from journey_subjects").fetchall()}
    assert len(rows) == TREATED + HOLDOUT + 1
    profile = dict(warehouse.execute(
        "select identifier_value, profile_id from identity_map where identifier_type = 'user_id'"
    ).fetchall())
    assert rows[profile["t1"]] == (False, 1, False, 0, 0.0)  # refunded only
    assert rows[profile["t2"]] == (False, 1, False, 0, 0.0)  # order after the window
    assert rows[profile["t3"]] == (False, 2, True, 1, 24.5)  # restarted, order once
    assert rows[profile["t5"]] == (False, 1, False, 0, 0.0)  # order before entering
    assert rows[profile["t6"]] == (False, 1, True, 2, 35.0)
    assert rows["anonymous_id:anon-x"] == (True, 1, False, 0, 0.0)


def test_conversion_lift_interval_matches_a_direct_computation(warehouse) -> None:
    lift = _lift(warehouse)
    treated, holdout = _groups()
    k_t, n_t = sum(1 for r in treated if r > 0), len(treated)
    k_h, n_h = sum(1 for r in holdout if r > 0), len(holdout)
    assert (lift["treated_subjects"], lift["holdout_subjects"]) == (40, 31)
    assert (lift["treated_conversions"], lift["holdout_conversions"]) == (k_t, k_h) == (14, 6)
    p_t, p_h = k_t / n_t, k_h / n_h
    # Newcombe's hybrid score interval from each group's Wilson interval (scipy's).
    l_t, u_t = stats.binomtest(k_t, n_t).proportion_ci(0.95, method="wilson")
    l_h, u_h = stats.binomtest(k_h, n_h).proportion_ci(0.95, method="wilson")
    low = (p_t - p_h) - math.sqrt((p_t - l_t) ** 2 + (u_h - p_h) ** 2)
    high = (p_t - p_h) + math.sqrt((u_t - p_t) ** 2 + (p_h - l_h) ** 2)
    assert lift["conversion_rate_lift"] == pytest.approx(p_t - p_h, abs=1e-12)
    assert lift["conversion_rate_lift_low"] == pytest.approx(low, abs=1e-6)
    assert lift["conversion_rate_lift_high"] == pytest.approx(high, abs=1e-6)
    assert lift["relative_conversion_lift"] == pytest.approx(p_t / p_h - 1)


def test_revenue_lift_interval_matches_welch(warehouse) -> None:
    lift = _lift(warehouse)
    treated, holdout = _groups()
    diff = float(np.mean(treated) - np.mean(holdout))
    # Welch's standard error, recovered from scipy's Welch t statistic.
    t_stat = stats.ttest_ind(treated, holdout, equal_var=False).statistic
    se = diff / t_stat
    assert lift["treated_revenue_per_subject"] == pytest.approx(np.mean(treated))
    assert lift["holdout_revenue_per_subject"] == pytest.approx(np.mean(holdout))
    assert lift["revenue_per_subject_lift_low"] == pytest.approx(diff - Z * se, rel=1e-9)
    assert lift["revenue_per_subject_lift_high"] == pytest.approx(diff + Z * se, rel=1e-9)
    assert lift["incremental_revenue"] == pytest.approx(diff * 40)


def test_funnel_orders_steps_and_counts_each_outcome(warehouse) -> None:
    rows = warehouse.execute(
        """select step, step_position, instances_entered, holdout_instances_entered,
                  instances_reached, sent, held_out, skipped, capped, failed
           from measurement_journey_funnel where journey = 'winback' order by step_position"""
    ).fetchall()
    # 72 instances: 71 subjects, and subject 3's restart is an instance of its own.
    assert rows == [
        ("first", 1, 72, 31, 70, 39, 30, 0, 1, 0),
        ("second", 2, 72, 31, 70, 26, 30, 14, 0, 0),
    ]


def test_latency_percentiles_match_numpy(warehouse) -> None:
    got = {(r[0], r[1]): r[2:] for r in warehouse.execute(
        "select scope, step, sends, p50_ms, p95_ms, p99_ms, max_ms "
        "from measurement_journey_latency").fetchall()}
    lat = latencies()
    every = lat["first"] + lat["second"]
    for key, values in ((("step", "first"), lat["first"]), (("step", "second"), lat["second"]),
                        (("journey", None), every), (("all", None), every)):
        sends, p50, p95, p99, top = got[key]
        assert sends == len(values)
        assert [p50, p95, p99] == pytest.approx(np.percentile(values, [50, 95, 99]))
        assert top == max(values)
