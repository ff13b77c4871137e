"""Journey declarations: `dbt_project/journeys.yml`, validated into typed models with clear errors.

A journey is declared once: what starts it (a track event keyed on a property such as
`cart_id`, or entry into an audience), the events that end it, a holdout share, and steps that
each wait a while after the trigger, check an optional SQL condition on the profile, and act on
one destination through `activations/` (send a message, or add to an ad audience that the exit
removes again). Frequency caps at the top of the file hold across every journey and every
append-mode sync (see journeys/caps.py).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import sqlglot
import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlglot import exp

from activations.caps import FrequencyCap
from activations.config import DestinationSpec, RetryPolicy, parse_duration
from activations.destinations.base import Channel

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
DEFAULT_JOURNEYS_FILE = "journeys.yml"


class JourneyConfigError(ValueError):
    """journeys.yml is wrong; the message names the file, the journey and the field."""


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("must be lower-case letters, digits and underscores")
    return value


# Journey and step names become parts of instance ids and idempotency keys: plain identifiers.
Name = Annotated[str, AfterValidator(_check_name)]


class StepKind(StrEnum):
    SEND = "send"  # one message or event per instance (append semantics)
    AUDIENCE = "audience"  # membership: added at the step, removed on exit or after `keep_for`


class Trigger(BaseModel):
    """What starts (or restarts) an instance."""

    model_config = ConfigDict(extra="forbid")
    # Track event names that start the journey, e.g. [Product Added, Product Removed].
    events: list[str] = Field(default_factory=list)
    # The property that keys instances (`cart_id`): the same key restarts the timer of the steps
    # not yet taken. Omitted: instances are keyed on the subject (one per person at a time).
    key: str | None = None
    # Or: entering this audience (a published audience model) starts the journey.
    audience: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        if bool(self.events) == bool(self.audience):
            raise ValueError("declare either `events:` (a list of track events) or `audience:`")
        if self.key is not None and not _IDENT.match(self.key):
            raise ValueError(f"key: {self.key!r} is not a property name")
        if self.audience and self.key:
            raise ValueError("key: audience triggers are keyed on the profile; remove `key:`")
        return self


class Exit(BaseModel):
    """What ends an instance early; every pending step is cancelled, audiences removed."""

    model_config = ConfigDict(extra="forbid")
    # Track events that end the journey, e.g. [Order Completed].
    events: list[str] = Field(default_factory=list)
    # `key`: an exit event ends the instance whose trigger key it carries (an order naming the
    # cart) and, when it carries no key, every instance of its subject. `subject`: any exit
    # event of the subject ends every instance of that subject.
    match: str = "key"
    # Also exit when the published profile shows an order after the instance began (orders
    # that reach the warehouse from the commerce system rather than as events).
    on_profile_order: bool = True

    @field_validator("match")
    @classmethod
    def _match(cls, value: str) -> str:
        if value not in ("key", "subject"):
            raise ValueError("must be `key` or `subject`")
        return value


class Action(BaseModel):
    """Where a step goes: a destination from activations/ and how fields map (as in syncs)."""

    model_config = ConfigDict(extra="forbid")
    destination: DestinationSpec
    # Consent channel; defaults to the destination's (required for webhooks).
    channel: Channel | None = None
    # destination field -> context column (profile columns, cart_items, cart_value, ...)
    identifiers: dict[str, str]
    fields: dict[str, str] = Field(default_factory=dict)
    # destination field -> Jinja template over the context
    templates: dict[str, str] = Field(default_factory=dict)
    max_attempts: int = Field(default=5, ge=1, le=100)
    # In-request retries stay short: the worker steps every journey on one thread, so a slow
    # vendor must not stall the others. The outbox retries across steps with backoff instead.
    retry: RetryPolicy = Field(default_factory=lambda: RetryPolicy(
        total=1, backoff_factor=0.05, backoff_max=1.0, timeout_seconds=5.0))


class Step(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    # Time after the (latest) trigger at which the step is due: 30m, 2h, 24h, 0s.
    after: timedelta
    # SQL boolean over the context (profile columns and cart_*); false skips this step only.
    condition: str | None = None
    send: Action | None = None
    audience: Action | None = None
    # For audience steps: remove the member this long after adding (the exit removes sooner).
    keep_for: timedelta | None = None

    @field_validator("after", "keep_for", mode="before")
    @classmethod
    def _duration(cls, value: object) -> object:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.send is None) == (self.audience is None):
            raise ValueError("declare exactly one of `send:` (a message) or `audience:`")
        if self.keep_for is not None and self.audience is None:
            raise ValueError("keep_for: only audience steps are removed after a while")
        return self

    @property
    def kind(self) -> StepKind:
        return StepKind.SEND if self.send is not None else StepKind.AUDIENCE

    @property
    def action(self) -> Action:
        action = self.send or self.audience
        assert action is not None
        return action


class Journey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name
    description: str = ""
    trigger: Trigger
    exit: Exit = Field(default_factory=Exit)
    # Share of subjects (0-50 %) that enter but receive nothing: the baseline for lift.
    holdout_percent: float = Field(default=0.0, ge=0.0, le=50.0)
    # After an instance ends, may the same key start a new one? (a new cart always can)
    reentry: bool = True
    steps: list[Step]

    @model_validator(mode="after")
    def _steps(self) -> Journey:
        if not self.steps:
            raise ValueError("steps: declare at least one step")
        names = [s.name for s in self.steps]
        if len(set(names)) != len(names):
            raise ValueError("steps: step names must be unique within a journey")
        afters = [s.after for s in self.steps]
        if afters != sorted(afters):
            raise ValueError("steps: list steps in the order they fall due (`after` ascending)")
        overlap = set(self.trigger.events) & set(self.exit.events)
        if overlap:
            raise ValueError(f"exit: {sorted(overlap)} cannot both start and end the journey")
        return self

    @property
    def keyed_on_property(self) -> bool:
        return self.trigger.key is not None

    @property
    def lifetime(self) -> timedelta:
        """How long an instance lives after its last trigger (last step, or its removal)."""
        return max(s.after + (s.keep_for or timedelta(0)) for s in self.steps)


class JourneysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = 1
    frequency_caps: list[FrequencyCap] = Field(default_factory=list)
    journeys: list[Journey] = Field(default_factory=list)


def condition_columns(condition: str) -> set[str]:
    """Columns a SQL condition reads; raises ValueError when it does not parse."""
    try:
        tree = sqlglot.parse_one(condition, read="duckdb")
    except sqlglot.errors.ParseError as exc:
        raise ValueError(f"condition {condition!r} is not valid SQL: {exc}") from None
    if isinstance(tree, exp.Select | exp.Subquery) or tree.find(exp.Select):
        raise ValueError(f"condition {condition!r}: a boolean expression, not a query")
    return {col.name for col in tree.find_all(exp.Column)}


def _fmt_loc(loc: tuple[Any, ...], raw: list[Any]) -> str:
    if len(loc) >= 2 and loc[0] == "journeys" and isinstance(loc[1], int):
        item = raw[loc[1]] if loc[1] < len(raw) else {}
        name = item.get("name") if isinstance(item, Mapping) else None
        rest = loc[2:]
        if len(rest) >= 2 and rest[0] == "steps" and isinstance(rest[1], int):
            steps = item.get("steps") if isinstance(item, Mapping) else None
            step = steps[rest[1]] if isinstance(steps, list) and rest[1] < len(steps) else {}
            sname = step.get("name") if isinstance(step, Mapping) else None
            rest = (f"steps[{sname or rest[1] + 1}]", *rest[2:])
        field = ".".join(str(p) for p in rest) or "(the journey itself)"
        return f"journey {name or '#' + str(loc[1] + 1)!s}, field {field}"
    return "field " + ".".join(str(p) for p in loc)


def parse_journeys(data: Any, source: str = DEFAULT_JOURNEYS_FILE) -> JourneysFile:
    """Validate parsed YAML; raise JourneyConfigError listing every problem with its place."""
    if data is None:
        return JourneysFile()
    if not isinstance(data, Mapping):
        raise JourneyConfigError(f"{source}: expected a mapping with a `journeys:` list")
    raw = data.get("journeys") or []
    try:
        parsed = JourneysFile.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {_fmt_loc(tuple(e['loc']), raw if isinstance(raw, list) else [])}: {e['msg']}"
            for e in exc.errors()
        ]
        raise JourneyConfigError(f"{source} is invalid:\n" + "\n".join(lines)) from None
    names = [j.name for j in parsed.journeys]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise JourneyConfigError(f"{source}: journey names must be unique; repeated: {dupes}")
    problems = []
    for journey in parsed.journeys:
        for step in journey.steps:
            if step.condition:
                try:
                    condition_columns(step.condition)
                except ValueError as exc:
                    problems.append(f"  journey {journey.name}, step {step.name}: {exc}")
    if problems:
        raise JourneyConfigError(f"{source} is invalid:\n" + "\n".join(problems))
    return parsed


def journeys_path(project_dir: Path, environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    override = env.get("HEADWATER_JOURNEYS_FILE")
    return Path(override).expanduser().resolve() if override else project_dir / "journeys.yml"


def load_journeys(path: Path) -> JourneysFile:
    """Read and validate a journeys.yml file; a missing file means no journeys."""
    if not path.exists():
        return JourneysFile()
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise JourneyConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_journeys(data, source=str(path))
