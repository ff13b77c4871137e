"""`headwater audience compile|list|preview` through click's CliRunner on a built warehouse."""

from __future__ import annotations

from pathlib import Path

import pytest
from audience_testkit import SEGMENTS, World, copy_project
from click.testing import CliRunner, Result

from headwater.cli import cli

WINBACK = (SEGMENTS["gold_tier"] & (SEGMENTS["lapsed_customers"] | SEGMENTS["churn_risk_high"])) - (
    SEGMENTS["purchased_recently"]
)


def run(
    world: World, *args: str, warehouse: Path | None = None, project: Path | None = None
) -> Result:
    env = {
        "HEADWATER_DUCKDB_PATH": str(warehouse or world.warehouse),
        "HEADWATER_DBT_PROJECT_DIR": str(project or world.project),
        "HEADWATER_TARGET": "duckdb",
    }
    return CliRunner().invoke(cli, ["audience", *args], env=env)


@pytest.fixture(scope="module")
def listed(world: World) -> Result:
    return run(world, "list")


def test_list_shows_definitions_and_member_counts(listed: Result) -> None:
    assert listed.exit_code == 0, listed.output
    out = listed.output
    assert "audience_loyalty_winback" in out
    assert "(gold_tier ∩ (lapsed_customers ∪ churn_risk_high)) − purchased_recently" in out
    assert "Gold-tier members who" in out
    line = next(ln for ln in out.splitlines() if "audience_cart_abandonment_sms" in ln)
    assert line.rstrip(" │").split()[-1] == str(
        len(SEGMENTS["cart_abandoners"] & SEGMENTS["sms_reachable"])
    )
    assert "nightly_staging" not in out  # an ordinary selector is not an audience


def test_preview_shows_definition_size_and_members(world: World) -> None:
    result = run(world, "preview", "audience_loyalty_winback", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert (
        "definition: (gold_tier ∩ (lapsed_customers ∪ churn_risk_high)) − purchased_recently"
        in (result.output)
    )
    assert f"size:       {len(WINBACK)} members" in result.output
    shown = sorted(WINBACK)[:2]
    hidden = sorted(WINBACK)[2:]
    for pid in shown:
        assert f"{pid}@example.com" in result.output
    for pid in hidden:
        assert f"{pid}@example.com" not in result.output
    assert "email_consent" in result.output


def test_preview_unknown_audience_lists_the_known_ones(world: World) -> None:
    result = run(world, "preview", "audience_nope")
    assert result.exit_code == 1
    assert "No audience named 'audience_nope'" in result.output
    assert "audience_cart_abandonment_email" in result.output


def test_unbuilt_warehouse_says_run_headwater_build(world: World, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.duckdb"
    listed = run(world, "list", warehouse=missing)
    assert listed.exit_code == 0
    assert "not built" in listed.output and "Run `headwater build`" in listed.output
    assert not missing.exists()  # a read-only look never creates a warehouse
    preview = run(world, "preview", "audience_loyalty_winback", warehouse=missing)
    assert preview.exit_code == 1
    assert "Run `headwater build`" in preview.output


def test_unknown_tag_fails_compile_with_a_clear_message(world: World, tmp_path: Path) -> None:
    project = copy_project(world, tmp_path / "project")
    selectors = project / "selectors.yml"
    selectors.write_text(selectors.read_text().replace("tag: sms_reachable", "tag: sms_reachble"))
    before = (project / "models" / "audiences" / "audience_cart_abandonment_sms.sql").read_text()
    result = run(world, "compile", project=project)
    assert result.exit_code == 1
    assert "'audience_cart_abandonment_sms'" in result.output
    assert "tag 'sms_reachble' matches no model" in result.output
    assert "Available segments: ads_reachable, cart_abandoners" in result.output
    # nothing was lost: the previous model is still there
    after = (project / "models" / "audiences" / "audience_cart_abandonment_sms.sql").read_text()
    assert after == before


def test_compile_reports_nothing_to_do_when_in_sync(world: World) -> None:
    result = run(world, "compile")
    assert result.exit_code == 0, result.output
    assert "0 files written" in result.output


def test_build_fails_before_dbt_on_a_bad_selector(world: World, tmp_path: Path) -> None:
    project = copy_project(world, tmp_path / "project")
    selectors = project / "selectors.yml"
    selectors.write_text(selectors.read_text().replace("- tag: gold_tier", "- '+gold_tier'", 1))
    warehouse = tmp_path / "wh.duckdb"
    env = {"HEADWATER_DUCKDB_PATH": str(warehouse), "HEADWATER_DBT_PROJECT_DIR": str(project)}
    result = CliRunner().invoke(cli, ["build"], env=env)
    assert result.exit_code == 1
    assert "graph operator" in result.output
    assert not warehouse.exists()  # dbt never ran
