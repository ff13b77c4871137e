"""journeys.yml validation: every mistake names the journey, the step and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from journeys.config import JourneyConfigError, load_journeys, parse_journeys

REFERENCE = Path(__file__).parents[2] / "dbt_project" / "journeys.yml"


def _reference() -> dict[str, Any]:
    return yaml.safe_load(REFERENCE.read_text())


def test_reference_file_is_valid() -> None:
    config = load_journeys(REFERENCE)
    cart = next(j for j in config.journeys if j.name == "cart_abandonment")
    assert [(s.name, s.after.total_seconds()) for s in cart.steps] == [
        ("email", 1800), ("sms", 7200), ("retargeting", 86400)]
    assert cart.trigger.key == "cart_id" and cart.exit.events == ["Order Completed"]
    assert {j.name for j in config.journeys} == {"cart_abandonment", "welcome"}


def _broken(edit: Any) -> str:
    data = _reference()
    edit(data)
    with pytest.raises(JourneyConfigError) as info:
        parse_journeys(copy.deepcopy(data), source="journeys.yml")
    return str(info.value)


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        pytest.param(lambda d: d["journeys"][0]["steps"][0].update(after="soon"),
                     "journey cart_abandonment, field steps[email].after", id="bad-duration"),
        pytest.param(lambda d: d["journeys"][0]["steps"][1].update(
            audience=d["journeys"][0]["steps"][2]["audience"]),
                     "exactly one of `send:`", id="send-and-audience"),
        pytest.param(lambda d: d["journeys"][0]["steps"].reverse(),
                     "in the order they fall due", id="steps-out-of-order"),
        pytest.param(lambda d: d["journeys"][0]["steps"][0].update(condition="select 1"),
                     "a boolean expression, not a query", id="condition-is-a-query"),
        pytest.param(lambda d: d["journeys"][0]["steps"][0].update(condition="cart_value >"),
                     "is not valid SQL", id="condition-syntax"),
        pytest.param(lambda d: d["journeys"][0].update(holdout_percent=80),
                     "holdout_percent", id="holdout-too-large"),
        pytest.param(lambda d: d["journeys"][0]["trigger"].update(audience="audience_x"),
                     "either `events:`", id="two-triggers"),
        pytest.param(lambda d: d["journeys"][1].update(name="cart_abandonment"),
                     "names must be unique", id="duplicate-name"),
        pytest.param(lambda d: d["journeys"][0]["steps"][0].update(name="First Email"),
                     "steps[First Email].name: Value error, must be lower-case", id="bad-name"),
        pytest.param(lambda d: d["journeys"][0].update(colour="red"),
                     "colour", id="unknown-field"),
        pytest.param(lambda d: d["journeys"][0]["steps"][0]["send"]["destination"].update(
            credentials={"signing_secret": "whsec_live_123"}),
                     "must name an environment variable", id="secret-in-yaml"),
        pytest.param(lambda d: d["frequency_caps"].append({"channel": "fax", "max": 1,
                                                            "per": "1d"}),
                     "frequency_caps", id="unknown-cap-channel"),
        pytest.param(lambda d: d["journeys"][0]["exit"].update(events=["Product Added"]),
                     "cannot both start and end", id="trigger-is-exit"),
    ],
)
def test_mistakes_are_named(edit: Any, expected: str) -> None:
    assert expected in _broken(edit)
