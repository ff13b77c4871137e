"""Audience selectors in `selectors.yml`, read with dbt's own selector parser.

dbt validates selectors.yml strictly (no extra keys on a selector), so an audience is told apart
from an ordinary selector by its name: every selector named `audience_*` is an audience, and its
generated model has the same name. dbt's parser turns the YAML (strings, one-key dicts,
`method`/`value`, `union`, `intersection`, `exclude`, `method: selector` references) into a
selection tree; this module reads that tree as set algebra over segment members.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from headwater.audiences.algebra import (
    Difference,
    Expr,
    Intersection,
    Segment,
    Union,
    describe,
    segments_of,
    simplify,
)
from headwater.audiences.catalog import SEGMENT_TAG, Catalog

AUDIENCE_PREFIX = "audience_"
SELECTORS_FILE = "selectors.yml"


class AudienceDefinitionError(ValueError):
    """An audience selector cannot be turned into set algebra over segments."""


@dataclass(frozen=True)
class AudienceSelector:
    """An audience as written: name, description and dbt's parsed selection tree."""

    name: str
    description: str
    spec: Any  # dbt.graph.selector_spec.SelectionSpec


@dataclass(frozen=True)
class Audience:
    """An audience resolved against the project's segment models."""

    name: str
    description: str
    expr: Expr

    @property
    def definition(self) -> str:
        return describe(self.expr)

    @property
    def segments(self) -> list[str]:
        return segments_of(self.expr)


def read_selectors(project_dir: Path) -> list[AudienceSelector]:
    """The audience selectors of `project_dir/selectors.yml` (none if the file is missing)."""
    from dbt.config.selectors import SelectorConfig
    from dbt.exceptions import DbtSelectorsError

    path = project_dir / SELECTORS_FILE
    if not path.exists():
        return []
    try:
        data = yaml.safe_load(path.read_text()) or {"selectors": []}
    except yaml.YAMLError as exc:
        raise AudienceDefinitionError(f"{path} is not valid YAML: {exc}") from exc
    try:
        with _dbt_flags():
            parsed = SelectorConfig.selectors_from_dict(data)
    except DbtSelectorsError as exc:
        raise AudienceDefinitionError(
            f"dbt rejects {path}: {exc.msg if hasattr(exc, 'msg') else exc}\n"
            "See https://docs.getdbt.com/reference/node-selection/yaml-selectors for the syntax."
        ) from exc
    descriptions = {s["name"]: s.get("description", "") for s in data.get("selectors", [])}
    return [
        AudienceSelector(
            name=name, description=descriptions.get(name, ""), spec=entry["definition"]
        )
        for name, entry in parsed.items()
        if name.startswith(AUDIENCE_PREFIX)
    ]


@contextlib.contextmanager
def _dbt_flags() -> Iterator[None]:
    """dbt's selector parser reads one global flag (indirect selection) that only exists inside
    a dbt invocation; supply a default outside one and put the flags back afterwards."""
    from dbt.flags import get_flags, set_flags

    flags = get_flags()
    if hasattr(flags, "INDIRECT_SELECTION"):
        yield
        return
    set_flags(argparse.Namespace(**vars(flags), INDIRECT_SELECTION="eager"))
    try:
        yield
    finally:
        set_flags(flags)


def resolve(selector: AudienceSelector, catalog: Catalog) -> Audience:
    """Turn a selector's tree into set algebra over segment models, or explain what is wrong."""
    return Audience(
        name=selector.name,
        description=selector.description,
        expr=simplify(_to_expr(selector.spec, selector.name, catalog)),
    )


def resolve_all(selectors: list[AudienceSelector], catalog: Catalog) -> list[Audience]:
    return [resolve(s, catalog) for s in selectors]


def _to_expr(spec: Any, audience: str, catalog: Catalog) -> Expr:
    from dbt.graph.selector_spec import (
        SelectionCriteria,
        SelectionDifference,
        SelectionIntersection,
        SelectionUnion,
    )

    if isinstance(spec, SelectionDifference):
        base, excluded = spec.components
        return Difference(_to_expr(base, audience, catalog), _to_expr(excluded, audience, catalog))
    if isinstance(spec, SelectionIntersection):
        return Intersection(tuple(_to_expr(c, audience, catalog) for c in spec.components))
    if isinstance(spec, SelectionUnion):
        return Union(tuple(_to_expr(c, audience, catalog) for c in spec.components))
    if isinstance(spec, SelectionCriteria):
        return _leaf(spec, audience, catalog)
    raise AudienceDefinitionError(
        f"Audience selector {audience!r}: cannot read {spec!r} as set algebra; use union, "
        "intersection, exclude, `method: tag` or `method: fqn`."
    )


def _leaf(spec: Any, audience: str, catalog: Catalog) -> Expr:
    method = str(getattr(spec.method, "value", spec.method))
    value = str(spec.value)
    written = f"{method}:{value}"
    available = ", ".join(catalog.segments) or "(none: the project has no model tagged 'segment')"
    if spec.parents or spec.children or spec.childrens_parents:
        raise AudienceDefinitionError(
            f"Audience selector {audience!r}: {spec.raw!r} uses a graph operator (+ or @), which "
            "would pull in models that are not segments. Name segments only. "
            f"Available segments: {available}."
        )
    if method == "tag":
        matches = catalog.with_tag(value)
        what = f"tag {value!r}"
    elif method == "fqn":
        matches = catalog.matching_fqn(value)
        what = f"model {value!r}"
    else:
        raise AudienceDefinitionError(
            f"Audience selector {audience!r}: {written!r} uses selector method {method!r}; "
            "audiences combine segments by `method: tag` or `method: fqn` (a model name). "
            f"Available segments: {available}."
        )
    if not matches:
        raise AudienceDefinitionError(
            f"Audience selector {audience!r}: {what} matches no model in the project. "
            f"Available segments: {available}."
        )
    not_segments = [m.name for m in matches if SEGMENT_TAG not in m.tags]
    if not_segments:
        raise AudienceDefinitionError(
            f"Audience selector {audience!r}: {what} selects {', '.join(not_segments)}, which "
            f"is not a segment model (segments carry tag {SEGMENT_TAG!r}: put the model in "
            f"models/segments/ or tag it). Available segments: {available}."
        )
    # A tag shared by several segments means "members of any of them", as dbt would select
    # every model carrying it.
    leaves = tuple(Segment(m.name) for m in matches)
    return leaves[0] if len(leaves) == 1 else Union(leaves)
