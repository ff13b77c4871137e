"""Set algebra over segments, and its compilation to dialect-neutral SQL with sqlglot.

An audience is an expression tree: leaves are segment models, inner nodes are union,
intersection and difference. `membership_sql` turns a tree into one query returning the
distinct `profile_id`s of the members. Every inner node becomes its own CTE holding one chain of
a single set operator, so operator precedence (which differs between engines: standard SQL binds
INTERSECT tighter, Snowflake documents its own order) never decides the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from sqlglot import exp

# Leaves render as placeholder table names that are swapped for `{{ ref('...') }}` afterwards;
# sqlglot cannot hold Jinja, and a plain identifier survives every dialect unquoted.
REF_PLACEHOLDER_PREFIX = "__hw_ref__"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The dialects every generated model must run on.
DIALECTS: tuple[str, ...] = ("duckdb", "snowflake")


@dataclass(frozen=True)
class Segment:
    """A leaf: the profiles in one segment model."""

    name: str

    def __post_init__(self) -> None:
        if not _IDENTIFIER.match(self.name):
            raise ValueError(
                f"Segment model name {self.name!r} is not a plain SQL identifier; "
                "rename the model to letters, digits and underscores."
            )


@dataclass(frozen=True)
class Union:
    """Profiles in any of the parts."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Intersection:
    """Profiles in every one of the parts."""

    parts: tuple[Expr, ...]


@dataclass(frozen=True)
class Difference:
    """Profiles in `base` that are not in `excluded` (dbt's `exclude`)."""

    base: Expr
    excluded: Expr


Expr = Segment | Union | Intersection | Difference

UNION_SIGN = "∪"
INTERSECTION_SIGN = "∩"
DIFFERENCE_SIGN = "−"


def simplify(expr: Expr) -> Expr:
    """Flatten nested unions/intersections and drop one-part operators (same members)."""
    if isinstance(expr, Segment):
        return expr
    if isinstance(expr, Difference):
        return Difference(simplify(expr.base), simplify(expr.excluded))
    parts: list[Expr] = []
    for part in (simplify(p) for p in expr.parts):
        if type(part) is type(expr):
            parts.extend(part.parts)  # type: ignore[union-attr]
        elif part not in parts:
            parts.append(part)
    if len(parts) == 1:
        return parts[0]
    return type(expr)(tuple(parts))


def describe(expr: Expr) -> str:
    """The expression as readable set algebra, e.g. `(a ∩ (b ∪ c)) − d`."""

    def operand(e: Expr) -> str:
        return e.name if isinstance(e, Segment) else f"({describe(e)})"

    if isinstance(expr, Segment):
        return expr.name
    if isinstance(expr, Difference):
        return f"{operand(expr.base)} {DIFFERENCE_SIGN} {operand(expr.excluded)}"
    sign = UNION_SIGN if isinstance(expr, Union) else INTERSECTION_SIGN
    return f" {sign} ".join(operand(p) for p in expr.parts)


def segments_of(expr: Expr) -> list[str]:
    """Segment names used by the expression, in first-use order, without repeats."""

    def walk(e: Expr) -> Iterator[str]:
        if isinstance(e, Segment):
            yield e.name
        elif isinstance(e, Difference):
            yield from walk(e.base)
            yield from walk(e.excluded)
        else:
            for p in e.parts:
                yield from walk(p)

    return list(dict.fromkeys(walk(expr)))


def placeholder(name: str) -> str:
    """The table name a leaf or the profiles model renders as before refs are substituted."""
    return f"{REF_PLACEHOLDER_PREFIX}{name}"


def _member_ctes(expr: Expr, members_cte: str) -> list[tuple[str, exp.Expression]]:
    """One CTE per inner node (a chain of one set operator), the last one named `members_cte`."""
    ctes: list[tuple[str, exp.Expression]] = []

    def operand(e: Expr) -> exp.Select:
        if isinstance(e, Segment):
            return exp.select("profile_id").from_(placeholder(e.name))
        body = build(e)
        name = f"step_{len(ctes) + 1}"
        ctes.append((name, body))
        return exp.select("profile_id").from_(name)

    def build(e: Expr) -> exp.Expression:
        if isinstance(e, Segment):
            # only reached for a one-segment audience: the set operators below are already
            # distinct, a bare read is not
            return exp.select("profile_id").distinct().from_(placeholder(e.name))
        if isinstance(e, Difference):
            return exp.except_(operand(e.base), operand(e.excluded), distinct=True)
        combine = exp.union if isinstance(e, Union) else exp.intersect
        query: exp.Expression = operand(e.parts[0])
        for part in e.parts[1:]:
            query = combine(query, operand(part), distinct=True)
        return query

    root = build(simplify(expr))
    ctes.append((members_cte, root))
    return ctes


def _with_ctes(query: exp.Select, ctes: list[tuple[str, exp.Expression]]) -> exp.Select:
    for name, body in ctes:
        query = query.with_(name, as_=body)
    return query


def membership_query(expr: Expr) -> exp.Select:
    """The distinct profile_ids of the members: `WITH ... members AS (...) SELECT profile_id`.

    Leaves read `profile_id` from `placeholder(segment)`; `render` swaps in real references.
    """
    ctes = _member_ctes(expr, "members")
    return _with_ctes(exp.select("profile_id").from_("members"), ctes)


def audience_query(expr: Expr, profiles_model: str) -> exp.Select:
    """Every column of `profiles_model` for each member (the fields syncs map)."""
    ctes = _member_ctes(expr, "members")
    query = (
        exp.select("profiles.*")
        .from_(exp.to_table(placeholder(profiles_model)).as_("profiles"))
        .join("members", on="members.profile_id = profiles.profile_id", join_type="inner")
    )
    return _with_ctes(query, ctes)


def render(query: exp.Expression, dialect: str, table: Callable[[str], str]) -> str:
    """SQL text in `dialect`, with each placeholder table replaced by `table(name)`."""
    sql = query.sql(dialect=dialect, pretty=True)
    pattern = re.compile(rf"\b{re.escape(REF_PLACEHOLDER_PREFIX)}([A-Za-z0-9_]+)\b")
    return pattern.sub(lambda m: table(m.group(1)), sql)
