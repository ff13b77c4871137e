"""`headwater journey list` and `explain`: read while the state's owner still holds it."""

from __future__ import annotations

from datetime import timedelta as td
from pathlib import Path

import pytest
from click.testing import CliRunner
from journey_testkit import T0, harness

from headwater.cli import cli


def test_list_and_explain_read_the_live_state(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEADWATER_JOURNEYS_FILE", raising=False)
    monkeypatch.setenv("HEADWATER_JOURNEY_STATE_PATH", str(tmp_path / "journey_state.sqlite"))
    with harness(tmp_path) as h:
        h.open()  # the fast path holds the state open, as the worker would
        h.track("Product Added", at=T0, anonymous_id="a1", cart_id="c1", sku="A",
                traits={"email": "Ann@Example.com"})
        h.track("Order Completed", at=T0 + td(minutes=5), anonymous_id="a1", cart_id="c1")
        h.track("Product Added", at=T0, anonymous_id="a2", cart_id="c2", sku="B",
                traits={"email": "bo@example.com"})
        h.at(td(minutes=31))
        runner = CliRunner()
        listed = runner.invoke(cli, ["journey", "list"])
        assert listed.exit_code == 0, listed.output
        assert "cart_abandonment" in listed.output and "welcome" in listed.output
        row = next(line for line in listed.output.splitlines() if "cart_abandonm" in line)
        assert row.split("│")[5].strip() == "1" and row.split("│")[6].strip() == "1"
        explained = runner.invoke(cli, ["journey", "explain", "ann@example.com"])
        assert explained.exit_code == 0, explained.output
        assert "entered" in explained.output and "Order Completed" in explained.output
        assert "step_sent" not in explained.output
        unknown = runner.invoke(cli, ["journey", "explain", "nobody@example.com"])
        assert unknown.exit_code != 0 and "No journey decisions" in unknown.output
