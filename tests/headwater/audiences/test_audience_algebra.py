"""Set algebra compiled by sqlglot, run on DuckDB and on Snowflake (fakesnow) against known sets."""

from __future__ import annotations

import random
from pathlib import Path

import duckdb
import pytest
import sqlglot

from headwater.audiences.algebra import (
    DIALECTS,
    Difference,
    Expr,
    Intersection,
    Segment,
    Union,
    describe,
    membership_query,
    render,
    segments_of,
    simplify,
)

SETS: dict[str, set[str]] = {
    "a": {"p1", "p2", "p3", "p4"},
    "b": {"p3", "p4", "p5"},
    "c": {"p4", "p5", "p6", "p1"},
    "d": {"p1", "p7"},
    "e": set(),
}


def expected(expr: Expr) -> set[str]:
    """The members, computed with Python sets: the reference the SQL must match."""
    if isinstance(expr, Segment):
        return SETS[expr.name]
    if isinstance(expr, Difference):
        return expected(expr.base) - expected(expr.excluded)
    parts = [expected(p) for p in expr.parts]
    return set.union(*parts) if isinstance(expr, Union) else set.intersection(*parts)


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    for name, members in SETS.items():
        c.execute(f"create table {name} (profile_id varchar)")
        # a duplicate row per member: set operations must still return each member once
        for m in sorted(members):
            c.execute(f"insert into {name} values (?), (?)", [m, m])
    return c


def members(con: duckdb.DuckDBPyConnection, expr: Expr, dialect: str = "duckdb") -> list[str]:
    sql = render(membership_query(expr), dialect, lambda name: name)
    return sorted(r[0] for r in con.execute(sql).fetchall())


a, b, c, d, e = (Segment(n) for n in "abcde")
CASES: list[tuple[str, Expr, set[str]]] = [
    ("leaf", a, {"p1", "p2", "p3", "p4"}),
    ("union", Union((a, b)), {"p1", "p2", "p3", "p4", "p5"}),
    ("intersection", Intersection((a, b)), {"p3", "p4"}),
    ("intersection of three", Intersection((a, b, c)), {"p4"}),
    ("exclude", Difference(a, b), {"p1", "p2"}),
    ("exclude a union", Difference(a, Union((b, d))), {"p2"}),
    (
        "intersection with nested union, minus",
        Difference(Intersection((a, Union((b, d)))), c),
        {"p3"},
    ),
    (
        "union of intersections",
        Union((Intersection((a, b)), Intersection((c, d)))),
        {"p1", "p3", "p4"},
    ),
    ("empty segment", Intersection((a, e)), set()),
    ("minus empty", Difference(a, e), {"p1", "p2", "p3", "p4"}),
]


@pytest.mark.parametrize(("label", "expr", "want"), CASES, ids=[c[0] for c in CASES])
def test_known_members(con: duckdb.DuckDBPyConnection, label: str, expr: Expr, want: set) -> None:
    assert expected(expr) == want  # the reference agrees with the hand-written answer
    assert members(con, expr) == sorted(want)


def _random_expr(rng: random.Random, depth: int) -> Expr:
    if depth == 0 or rng.random() < 0.3:
        return Segment(rng.choice(sorted(SETS)))
    kind = rng.choice(["union", "intersection", "difference"])
    if kind == "difference":
        return Difference(_random_expr(rng, depth - 1), _random_expr(rng, depth - 1))
    parts = tuple(_random_expr(rng, depth - 1) for _ in range(rng.randint(2, 3)))
    return Union(parts) if kind == "union" else Intersection(parts)


def test_random_nested_expressions_match_python_sets(con: duckdb.DuckDBPyConnection) -> None:
    """Precedence traps (mixed operators, deep nesting) compared with Python's set algebra."""
    rng = random.Random(20260501)
    for _ in range(150):
        expr = _random_expr(rng, 4)
        assert members(con, expr) == sorted(expected(expr)), describe(expr)


def test_simplify_flattens_and_keeps_meaning(con: duckdb.DuckDBPyConnection) -> None:
    nested = Union((a, Union((b, Union((c,)))), a))
    assert simplify(nested) == Union((a, b, c))
    assert members(con, nested) == sorted(expected(Union((a, b, c))))
    assert simplify(Intersection((Segment("a"),))) == a


def test_describe_is_readable_set_algebra() -> None:
    expr = Difference(Intersection((a, Union((b, c)))), d)
    assert describe(expr) == "(a ∩ (b ∪ c)) − d"
    assert segments_of(expr) == ["a", "b", "c", "d"]


def test_segment_names_must_be_identifiers() -> None:
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        Segment("drop table x; --")


def test_duckdb_and_snowflake_renderings_agree_and_parse() -> None:
    rng = random.Random(7)
    for _ in range(40):
        query = membership_query(_random_expr(rng, 3))
        texts = {dialect: render(query, dialect, lambda n: n) for dialect in DIALECTS}
        assert len(set(texts.values())) == 1, texts
        # Each rendering parses back in its own dialect to the same tree.
        for dialect, sql in texts.items():
            reparsed = sqlglot.parse_one(sql, read=dialect)
            assert reparsed.sql(dialect=dialect, pretty=True) == sql


def test_runs_on_snowflake_under_fakesnow(tmp_path: Path) -> None:
    """The Snowflake rendering, executed through Snowflake's connector (fakesnow)."""
    fakesnow = pytest.importorskip("fakesnow")
    import snowflake.connector

    db_path = tmp_path / "fakesnow"
    db_path.mkdir()
    exprs = [Difference(Intersection((a, Union((b, d)))), c), Union((Intersection((a, b)), d))]
    with fakesnow.patch(db_path=str(db_path)):
        conn = snowflake.connector.connect(database="HW", schema="AUD")
        cur = conn.cursor()
        cur.execute("create database if not exists HW")
        cur.execute("create schema if not exists HW.AUD")
        cur.execute("use schema HW.AUD")
        for name, values in SETS.items():
            cur.execute(f"create table {name} (profile_id varchar)")
            for m in sorted(values):
                cur.execute(f"insert into {name} values ('{m}')")
        for expr in exprs:
            cur.execute(render(membership_query(expr), "snowflake", lambda n: n))
            got = sorted(r[0] for r in cur.fetchall())
            assert got == sorted(expected(expr)), describe(expr)
        conn.close()
