"""Propensity scores on a generated world: features and labels recomputed in Python from the
attributed orders and events, the SQL Newton fit against scikit-learn on the same rows, the SQL
AUC against scikit-learn's, and today's scores against the parameters applied in numpy.

Real dbt on a real DuckDB file, world from the project's own generator.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pytest

from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.demo.world import generate_world

pytestmark = pytest.mark.slow

AS_OF = datetime(2026, 11, 1, 12, 0, 0)
UPSTREAM_TESTS = [
    f"resource_type:test,path:models/{folder}"
    for folder in ("staging", "intermediate", "marts/identity")
]
SCORES = ("purchase_propensity_30d", "churn_risk")


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> duckdb.DuckDBPyConnection:
    tmp = tmp_path_factory.mktemp("scores_world")
    db = tmp / "wh.duckdb"
    world = duckdb.connect(str(db))
    generate_world(world, customers=3000, seed=5, as_of=AS_OF)
    world.close()
    run_dbt(
        "build",
        [
            "--select", "+propensity_evaluation", "+profile_scores",
            "--indirect-selection", "buildable",
            # Upstream parts' tests run in their own suites; here only ours.
            "--exclude", *UPSTREAM_TESTS,
            "--target-path", str(tmp / "target"),
            "--log-path", str(tmp / "logs"),
            "--vars", f"{{as_of: '{AS_OF.isoformat(sep=' ')}'}}",
        ],
        Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)}),
    )
    # dbt-duckdb keeps its connection open in this process: open with the same configuration.
    connection = duckdb.connect(str(db))
    yield connection
    connection.close()


def _features(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [
        r[0]
        for r in con.execute(
            "select feature_name from propensity_parameters where feature_index > 0 "
            "group by feature_index, feature_name order by feature_index"
        ).fetchall()
    ]


def _xy(con: duckdb.DuckDBPyConnection, score: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    features = _features(con)
    data = con.execute(
        f"select {', '.join(features)}, label from propensity_training_set "
        "where score_name = ? and split = ? order by profile_id",
        [score, split],
    ).fetchnumpy()
    x = np.column_stack([np.asarray(data[f], dtype=float) for f in features])
    return x, np.asarray(data["label"], dtype=float)


def _params(con: duckdb.DuckDBPyConnection, score: str) -> dict[str, np.ndarray]:
    rows = con.execute(
        "select coefficient, feature_mean, feature_stddev from propensity_parameters "
        "where score_name = ? order by feature_index",
        [score],
    ).fetchall()
    return {
        "coef": np.array([r[0] for r in rows]),
        "mean": np.array([r[1] for r in rows[1:]]),
        "sd": np.array([r[2] for r in rows[1:]]),
    }


def _predict(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = params["coef"][0] + ((x - params["mean"]) / params["sd"]) @ params["coef"][1:]
    return 1 / (1 + np.exp(-z))


def test_features_and_labels_recomputed(con: duckdb.DuckDBPyConnection) -> None:
    """At the purchase_eval cutoff: only what happened before it counts, labels come after."""
    cutoff, window = con.execute(
        "select min(cutoff_at), min(label_window_days) from int_propensity_features "
        "where cutoff_name = 'purchase_eval'"
    ).fetchone()
    assert cutoff == AS_OF - timedelta(days=30) and window == 30
    orders: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for pid, at, total in con.execute(
        "select profile_id, ordered_at, total from int_profile_orders where counts_as_purchase"
    ).fetchall():
        orders[pid].append((at, float(total)))
    events: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for pid, at, name in con.execute(
        "select profile_id, event_at, event_name from int_profile_events"
    ).fetchall():
        events[pid].append((at, name))

    cur = con.execute(
        "select * from int_propensity_features where cutoff_name = 'purchase_eval'"
    )
    names = [d[0] for d in cur.description]
    rows: list[dict[str, Any]] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    active = {
        pid
        for pid in set(orders) | set(events)
        if any(at < cutoff for at, _ in orders[pid]) or any(at < cutoff for at, _ in events[pid])
    }
    assert {r["profile_id"] for r in rows} == active
    year, month = cutoff - timedelta(days=365), cutoff - timedelta(days=30)
    for r in rows:
        before = [(at, t) for at, t in orders[r["profile_id"]] if at < cutoff]
        recent = [t for at, t in before if at >= year]
        assert r["orders_365d"] == len(recent)
        assert r["spend_365d"] == pytest.approx(sum(recent))
        assert r["has_ordered"] == (1 if before else 0)
        if before:
            days = (cutoff - max(at for at, _ in before)).total_seconds() / 86400
            assert r["days_since_last_order"] == pytest.approx(min(days, 730))
        evs = [(at, n) for at, n in events[r["profile_id"]] if month <= at < cutoff]
        assert r["events_30d"] == len(evs)
        assert r["cart_adds_30d"] == sum(1 for _, n in evs if n == "Product Added")
        assert r["log_events_30d"] == pytest.approx(math.log1p(len(evs)))
        after = [at for at, _ in orders[r["profile_id"]]
                 if cutoff <= at < cutoff + timedelta(days=window)]
        assert r["purchased_in_window"] == (1 if after else 0)


def test_windows_are_out_of_time(con: duckdb.DuckDBPyConnection) -> None:
    cutoffs = dict(
        con.execute(
            "select cutoff_name, min(cutoff_at + to_days(label_window_days)) "
            "from int_propensity_features group by cutoff_name"
        ).fetchall()
    )
    starts = dict(
        con.execute(
            "select cutoff_name, min(cutoff_at) from int_propensity_features group by cutoff_name"
        ).fetchall()
    )
    for score in ("purchase", "churn"):
        # The train labels end where the eval cutoff starts; the eval labels end at as_of.
        assert cutoffs[f"{score}_train"] == starts[f"{score}_eval"]
        assert cutoffs[f"{score}_eval"] == AS_OF
    assert starts["score"] == AS_OF


@pytest.mark.parametrize("score", SCORES)
def test_sql_fit_matches_scikit_learn(con: duckdb.DuckDBPyConnection, score: str) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x, y = _xy(con, score, "train")
    assert 0 < y.sum() < len(y), "both classes are needed to fit"
    params = _params(con, score)
    np.testing.assert_allclose(params["mean"], x.mean(axis=0), rtol=1e-9, atol=1e-9)
    sd = x.std(axis=0)
    np.testing.assert_allclose(params["sd"], np.where(sd > 0, sd, 1), rtol=1e-9, atol=1e-9)
    l2 = con.execute(
        "select max(l2_penalty) from propensity_parameters where score_name = ?", [score]
    ).fetchone()[0]
    model = LogisticRegression(C=1 / l2, max_iter=2000, tol=1e-10)
    model.fit((x - params["mean"]) / params["sd"], y)
    expected = np.concatenate([model.intercept_, model.coef_[0]])
    np.testing.assert_allclose(params["coef"], expected, atol=1e-4)

    for split in ("train", "eval"):
        xs, ys = _xy(con, split=split, score=score)
        sql_auc = con.execute(
            "select auc from propensity_evaluation where score_name = ? and split = ?",
            [score, split],
        ).fetchone()[0]
        assert sql_auc == pytest.approx(roc_auc_score(ys, _predict(params, xs)), abs=1e-9)


@pytest.mark.parametrize("score", SCORES)
def test_today_scores_apply_the_parameters(con: duckdb.DuckDBPyConnection, score: str) -> None:
    features = _features(con)
    params = _params(con, score)
    # Churn is defined for customers only: non-customers have no churn_risk.
    wrong = con.execute(
        f"select count(*) from int_propensity_features f join profile_scores s using (profile_id) "
        f"where f.cutoff_name = 'score' and (s.{score} is null) <> "
        + ("(f.has_ordered = 0)" if score == "churn_risk" else "false")
    ).fetchone()[0]
    assert wrong == 0
    data = con.execute(
        f"select s.{score} as score, {', '.join('f.' + f for f in features)} "
        "from int_propensity_features f join profile_scores s using (profile_id) "
        f"where f.cutoff_name = 'score' and s.{score} is not null order by f.profile_id"
    ).fetchnumpy()
    x = np.column_stack([np.asarray(data[f], dtype=float) for f in features])
    got = np.asarray(data["score"], dtype=float)
    assert len(got) > 100
    np.testing.assert_allclose(got, _predict(params, x), rtol=1e-9, atol=1e-12)


def test_purchase_score_ranks_better_than_chance(con: duckdb.DuckDBPyConnection) -> None:
    auc = con.execute(
        "select auc from propensity_evaluation "
        "where score_name = 'purchase_propensity_30d' and split = 'eval'"
    ).fetchone()[0]
    # The generator ties buying to engagement and loyalty: the features carry real signal.
    assert auc > 0.55
