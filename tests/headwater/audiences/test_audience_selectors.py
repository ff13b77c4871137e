"""Reading audience selectors from selectors.yml and resolving them against segment models."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from headwater.audiences import (
    AudienceDefinitionError,
    Catalog,
    ModelInfo,
    load_catalog,
    read_selectors,
    resolve,
)
from headwater.audiences.algebra import Difference, Intersection, Segment, Union

SEGMENTS = ["cart_abandoners", "email_reachable", "sms_reachable", "gold_tier", "lapsed_customers"]


def _catalog() -> Catalog:
    models = [
        ModelInfo(
            name=n,
            fqn=("headwater", "segments", n),
            tags=frozenset({"segment", n} | ({"reachable"} if n.endswith("_reachable") else set())),
            path=f"models/segments/{n}.sql",
        )
        for n in SEGMENTS
    ]
    models.append(
        ModelInfo("customer_profiles", ("headwater", "marts", "customer_profiles"), frozenset(), "")
    )
    models.append(
        ModelInfo("stg_events", ("headwater", "staging", "stg_events"), frozenset({"pii"}), "")
    )
    return Catalog.from_models(models)


def _resolve_yaml(tmp_path: Path, selectors_yaml: str) -> list:
    (tmp_path / "selectors.yml").write_text(selectors_yaml)
    return [resolve(s, _catalog()) for s in read_selectors(tmp_path)]


def test_shipped_audiences_read_as_intended() -> None:
    """The repository's own selectors.yml: the journey's audiences and the win-back."""
    from headwater.config import DBT_PROJECT_DIR

    catalog = Catalog.from_models(
        ModelInfo(n, ("headwater", "segments", n), frozenset({"segment", n}), "")
        for n in [
            "cart_abandoners",
            "email_reachable",
            "sms_reachable",
            "ads_reachable",
            "gold_tier",
            "lapsed_customers",
            "churn_risk_high",
            "purchased_recently",
        ]
    )
    got = {s.name: resolve(s, catalog).definition for s in read_selectors(DBT_PROJECT_DIR)}
    assert got == {
        "audience_cart_abandonment_email": "cart_abandoners ∩ email_reachable",
        "audience_cart_abandonment_sms": "cart_abandoners ∩ sms_reachable",
        "audience_cart_abandonment_retargeting": "cart_abandoners ∩ ads_reachable",
        "audience_loyalty_winback": (
            "(gold_tier ∩ (lapsed_customers ∪ churn_risk_high)) − purchased_recently"
        ),
    }


def test_every_selector_form_resolves(tmp_path: Path) -> None:
    audiences = _resolve_yaml(
        tmp_path,
        """
selectors:
  - name: plain_selector
    definition: "tag:pii"
  - name: audience_forms
    description: all the ways to name a segment
    definition:
      intersection:
        - "tag:cart_abandoners"
        - tag: gold_tier
        - method: fqn
          value: segments.email_reachable
        - "lapsed_customers"
  - name: audience_exclude_beside_method
    definition:
      method: tag
      value: gold_tier
      exclude:
        - tag: lapsed_customers
        - cart_abandoners
  - name: audience_shared_tag
    definition:
      tag: reachable
  - name: audience_reuse
    definition:
      union:
        - method: selector
          value: audience_shared_tag
        - gold_tier
""",
    )
    by_name = {a.name: a for a in audiences}
    assert "plain_selector" not in by_name  # ordinary selectors are left alone
    assert by_name["audience_forms"].expr == Intersection(
        tuple(
            Segment(n)
            for n in ["cart_abandoners", "gold_tier", "email_reachable", "lapsed_customers"]
        )
    )
    assert by_name["audience_forms"].description == "all the ways to name a segment"
    assert by_name["audience_exclude_beside_method"].expr == Difference(
        Segment("gold_tier"), Union((Segment("lapsed_customers"), Segment("cart_abandoners")))
    )
    assert by_name["audience_shared_tag"].expr == Union(
        (Segment("email_reachable"), Segment("sms_reachable"))
    )
    assert by_name["audience_reuse"].definition == "email_reachable ∪ sms_reachable ∪ gold_tier"


def _error(tmp_path: Path, definition: str) -> str:
    with pytest.raises(AudienceDefinitionError) as info:
        _resolve_yaml(
            tmp_path,
            f"selectors:\n  - name: audience_broken\n    definition:\n{definition}",
        )
    return str(info.value)


def test_unknown_tag_names_selector_value_and_segments(tmp_path: Path) -> None:
    message = _error(
        tmp_path,
        "      intersection:\n        - tag: cart_abandoners\n        - tag: cart_abandonerz\n",
    )
    assert "'audience_broken'" in message
    assert "'cart_abandonerz'" in message
    assert "Available segments: cart_abandoners, email_reachable, gold_tier" in message


def test_unknown_model(tmp_path: Path) -> None:
    message = _error(tmp_path, "      method: fqn\n      value: vip_customers\n")
    assert "model 'vip_customers' matches no model" in message
    assert "Available segments:" in message


def test_non_segment_model_is_rejected(tmp_path: Path) -> None:
    message = _error(tmp_path, "      union:\n        - gold_tier\n        - stg_events\n")
    assert "stg_events, which is not a segment model" in message
    message = _error(tmp_path, "      tag: pii\n")
    assert "stg_events, which is not a segment model" in message


def test_graph_operators_and_other_methods_are_rejected(tmp_path: Path) -> None:
    assert "graph operator" in _error(tmp_path, "      union:\n        - '+gold_tier'\n")
    message = _error(tmp_path, "      method: path\n      value: models/segments\n")
    assert "selector method 'path'" in message


def test_selectors_dbt_rejects_are_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "selectors.yml").write_text(
        "selectors:\n  - name: audience_x\n    meta: {a: 1}\n    definition: {tag: gold_tier}\n"
    )
    with pytest.raises(AudienceDefinitionError, match="dbt rejects .*selectors.yml"):
        read_selectors(tmp_path)


def test_missing_selectors_file_means_no_audiences(tmp_path: Path) -> None:
    assert read_selectors(tmp_path) == []


def test_catalog_reads_tags_from_a_real_dbt_parse(world, tmp_path: Path) -> None:  # noqa: ANN001
    """Folder config (`segment`) and config() tags, as dbt combines them; audiences left out.
    The cached catalog follows edits to the project."""
    project = tmp_path / "project"
    shutil.copytree(world.project, project, ignore=shutil.ignore_patterns("target", "logs"))
    catalog = load_catalog(project, tmp_path / "work")
    assert catalog.segments == sorted(
        [
            "cart_abandoners",
            "email_reachable",
            "sms_reachable",
            "ads_reachable",
            "gold_tier",
            "lapsed_customers",
            "churn_risk_high",
            "purchased_recently",
            "high_value",
        ]
    )
    assert "reachable" in catalog.models["sms_reachable"].tags
    assert not catalog.is_segment("stg_things")
    assert not any(name.startswith("audience_") for name in catalog.models)

    segment = project / "models" / "segments" / "high_value.sql"
    segment.write_text(segment.read_text().replace("['high_value']", "['high_value', 'vip']"))
    assert "vip" in load_catalog(project, tmp_path / "work").models["high_value"].tags
