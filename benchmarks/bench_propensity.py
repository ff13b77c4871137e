"""Propensity scores fit in SQL vs scikit-learn on the same rows.

Generates a demo world, builds the scores with dbt on DuckDB, reads `propensity_training_set`
and fits scikit-learn's LogisticRegression (StandardScaler + the same L2 penalty) on exactly the
train rows the SQL fit used. Both are evaluated out of time on the eval rows. The baseline is
scikit-learn, measured in the same run: per score, the AUC of each and their difference (target
|diff| <= 0.02), the largest coefficient difference, and the fit time of each.

    python -m benchmarks propensity --quick     # 20k customers
    python -m benchmarks propensity             # 200k customers
"""

from __future__ import annotations

import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from headwater.config import Settings
from headwater.dbt import run_dbt
from headwater.demo.world import generate_world
from headwater.warehouse import scalar

AS_OF = datetime(2026, 11, 1, 12, 0, 0)
SEED = 42
TARGET_AUC_DIFF = 0.02


def _dbt(command: str, select: str, db: Path, tmp: Path) -> float:
    started = time.perf_counter()
    run_dbt(
        command,
        [
            "--select", select,
            "--indirect-selection", "buildable" if command == "build" else "eager",
            "--target-path", str(tmp / "target"),
            "--log-path", str(tmp / "logs"),
            "--vars", f"{{as_of: '{AS_OF.isoformat(sep=' ')}'}}",
        ],
        Settings.from_env({"HEADWATER_DUCKDB_PATH": str(db)}),
    )
    return time.perf_counter() - started


def _features(con: duckdb.DuckDBPyConnection) -> list[str]:
    rows = con.execute(
        "select feature_name from propensity_parameters where feature_index > 0 "
        "group by feature_index, feature_name order by feature_index"
    ).fetchall()
    return [r[0] for r in rows]


def _compare(con: duckdb.DuckDBPyConnection, score: str, features: list[str]) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import StandardScaler

    cols = ", ".join(features)

    def load(split: str) -> tuple[np.ndarray, np.ndarray]:
        data = con.execute(
            f"select {cols}, label from propensity_training_set "
            "where score_name = ? and split = ? order by profile_id",
            [score, split],
        ).fetchnumpy()
        x = np.column_stack([np.asarray(data[f], dtype=float) for f in features])
        return x, np.asarray(data["label"], dtype=float)

    x_train, y_train = load("train")
    x_eval, y_eval = load("eval")
    l2 = scalar(
        con, "select max(l2_penalty) from propensity_parameters where score_name = ?", [score]
    )

    started = time.perf_counter()
    scaler = StandardScaler().fit(x_train)
    model = LogisticRegression(C=1.0 / l2, max_iter=1000, tol=1e-8)
    model.fit(scaler.transform(x_train), y_train)
    sklearn_seconds = time.perf_counter() - started
    sk_eval = roc_auc_score(y_eval, model.predict_proba(scaler.transform(x_eval))[:, 1])
    sk_train = roc_auc_score(y_train, model.predict_proba(scaler.transform(x_train))[:, 1])

    sql_auc = dict(
        con.execute(
            "select split, auc from propensity_evaluation where score_name = ?", [score]
        ).fetchall()
    )
    params = con.execute(
        "select coefficient from propensity_parameters where score_name = ? "
        "order by feature_index",
        [score],
    ).fetchall()
    sql_coef = np.array([p[0] for p in params], dtype=float)
    sk_coef = np.concatenate([model.intercept_, model.coef_[0]])
    # The SQL AUC is recomputed here from the SQL parameters, so that the SQL AUC computation is
    # checked too, not only the fit.
    z = sql_coef[0] + scaler.transform(x_eval) @ sql_coef[1:]
    sql_eval_recomputed = roc_auc_score(y_eval, 1 / (1 + np.exp(-z)))
    return {
        "score": score,
        "train rows/pos": f"{len(y_train)}/{int(y_train.sum())}",
        "eval rows/pos": f"{len(y_eval)}/{int(y_eval.sum())}",
        "auc_eval_sql": sql_auc["eval"],
        "auc_eval_sklearn": sk_eval,
        "auc_diff": sql_auc["eval"] - sk_eval,
        "auc_train_diff": sql_auc["train"] - sk_train,
        # The SQL AUC computation, checked against scikit-learn's on the SQL parameters.
        "auc_sql_check_diff": sql_auc["eval"] - sql_eval_recomputed,
        "max_coef_diff": float(np.max(np.abs(sql_coef - sk_coef))),
        "sklearn_fit_s": sklearn_seconds,
        "ok": abs(sql_auc["eval"] - sk_eval) <= TARGET_AUC_DIFF,
    }


def run(quick: bool) -> list[dict[str, Any]]:
    customers = 20_000 if quick else 200_000
    with tempfile.TemporaryDirectory(prefix="bench_propensity_") as name:
        tmp = Path(name)
        db = tmp / "wh.duckdb"
        started = time.perf_counter()
        con = duckdb.connect(str(db))
        generate_world(con, customers=customers, seed=SEED, as_of=AS_OF)
        con.close()
        generate_s = time.perf_counter() - started
        build_s = _dbt("build", "+propensity_evaluation +profile_scores", db, tmp)
        # The fit alone, on tables already built: what the SQL pays where sklearn pays fit().
        sql_fit_s = _dbt("run", "propensity_parameters", db, tmp)
        con = duckdb.connect(str(db))
        try:
            features = _features(con)
            rows = [_compare(con, score, features) for score in ("purchase_propensity_30d",
                                                                 "churn_risk")]
        finally:
            con.close()
    for row in rows:
        # sql_fit_s is a whole `dbt run` of the one model, dbt start-up and parsing included.
        row["sql_fit_s"] = sql_fit_s
        row["fit_ratio"] = sql_fit_s / max(row["sklearn_fit_s"], 1e-9)
    print(f"{customers} customers: generate {generate_s:.1f}s, dbt build {build_s:.1f}s")
    return rows
