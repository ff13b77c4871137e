"""Sync declarations: `dbt_project/syncs.yml`, validated into typed models with clear errors.

A sync says which audience goes to which destination, how audience columns map to destination
fields (plain columns and Jinja templates), and the mode. Errors name the file, the sync and
the field, and say what to change, because analytics engineers edit this file by hand.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from activations.destinations.base import Channel, DestinationConfig

# Sync names become part of state table names: keep them plain SQL identifiers.
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# A column or relation reference: `name` or `schema.name`.
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """`30m`, `2h`, `1.5d`, `0s`, or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if not match:
            raise ValueError(f"{value!r} is not a duration; write e.g. 30m, 2h, 1d, 0s")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return timedelta(seconds=seconds)



class SyncConfigError(ValueError):
    """syncs.yml is wrong; the message names the file, the sync and the field."""


class Mode(StrEnum):
    """How audience changes become destination requests."""

    UPSERT = "upsert"  # adds and changes; members who leave stay at the destination
    MIRROR = "mirror"  # adds, changes and removes: the destination mirrors the audience
    APPEND = "append"  # one event/message per new member or changed row; never removes


class RateLimit(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requests_per_second: float = Field(gt=0)
    burst: int = Field(default=1, ge=1)


class RetryPolicy(BaseModel):
    """HTTP-level retries inside one run (urllib3 Retry)."""

    model_config = ConfigDict(extra="forbid")
    total: int = Field(default=5, ge=0, le=20)
    backoff_factor: float = Field(default=0.5, ge=0)
    backoff_max: float = Field(default=60.0, gt=0)
    backoff_jitter: float = Field(default=0.5, ge=0)
    timeout_seconds: float = Field(default=30.0, gt=0)


class DestinationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: str
    base_url: str | None = None
    # destination credential name -> NAME OF the environment variable holding it (never the secret)
    credentials: dict[str, str] = Field(default_factory=dict)
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("credentials")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, env in value.items():
            if not re.fullmatch(r"[A-Z_][A-Z0-9_]*", str(env)):
                raise ValueError(
                    f"credentials.{name} must name an environment variable (like "
                    f"SENDGRID_API_KEY), not hold the secret itself; put the secret in the "
                    f"environment and its name here"
                )
        return value


class SyncSpec(BaseModel):
    """One sync as declared in syncs.yml."""

    model_config = ConfigDict(extra="forbid")
    name: str
    # The audience relation: a dbt model name (`audience_cart_abandonment_email`) or schema.name.
    audience: str
    destination: DestinationSpec
    mode: Mode
    # Consent channel gating this sync; defaults to the destination's own channel. `none` only
    # for destinations without one (webhooks that do not reach a person).
    channel: Channel | None = None
    # destination field -> audience column; every identifier must be non-null for a member to go
    identifiers: dict[str, str]
    fields: dict[str, str] = Field(default_factory=dict)
    # destination field -> Jinja template over the audience row's columns
    templates: dict[str, str] = Field(default_factory=dict)
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    # A record rejected this many times is dead-lettered until someone replays it.
    max_attempts: int = Field(default=5, ge=1, le=100)
    rate_limit: RateLimit | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "must be lower-case letters, digits and underscores, starting with a letter "
                "(it names state tables)"
            )
        return value

    @field_validator("audience")
    @classmethod
    def _audience(cls, value: str) -> str:
        if not all(_IDENT.match(p) for p in value.split(".")) or value.count(".") > 1:
            raise ValueError("must be a model name or schema.model")
        return value

    @model_validator(mode="after")
    def _columns(self) -> SyncSpec:
        if not self.identifiers:
            raise ValueError("identifiers: declare at least one (e.g. `email: email`)")
        for section in ("identifiers", "fields"):
            for dest, column in getattr(self, section).items():
                if not _IDENT.match(column):
                    raise ValueError(f"{section}.{dest}: {column!r} is not a column name")
        seen: set[str] = set()
        for section in ("identifiers", "fields", "templates"):
            for dest in getattr(self, section):
                if dest in seen:
                    raise ValueError(f"{section}.{dest}: destination field declared twice")
                seen.add(dest)
        if self.channel == Channel.ADS and self.mode == Mode.UPSERT:
            raise ValueError(
                "mode: an ads sync must be `mirror`, so that a consent withdrawal or a member "
                "leaving removes them from the ad audience"
            )
        return self

    @property
    def source_columns(self) -> list[str]:
        """Columns read for identifiers and fields (templates add theirs at compile time)."""
        cols = [*self.identifiers.values(), *self.fields.values()]
        return list(dict.fromkeys(cols))


class SyncsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = 1
    syncs: list[SyncSpec] = Field(default_factory=list)


def _fmt_loc(loc: tuple[Any, ...], specs: list[Any]) -> str:
    if len(loc) >= 2 and loc[0] == "syncs" and isinstance(loc[1], int):
        raw = specs[loc[1]] if loc[1] < len(specs) else {}
        name = raw.get("name") if isinstance(raw, Mapping) else None
        field = ".".join(str(p) for p in loc[2:]) or "(the sync itself)"
        return f"sync {name or '#' + str(loc[1] + 1)!s}, field {field}"
    return "field " + ".".join(str(p) for p in loc)


def parse_syncs(data: Any, source: str = "syncs.yml") -> list[SyncSpec]:
    """Validate parsed YAML; raise SyncConfigError listing every problem with its location."""
    if data is None:
        return []
    if not isinstance(data, Mapping):
        raise SyncConfigError(f"{source}: expected a mapping with a `syncs:` list at the top")
    raw_syncs = data.get("syncs") or []
    try:
        parsed = SyncsFile.model_validate(data)
    except ValidationError as exc:
        lines = [
            f"  {_fmt_loc(tuple(err['loc']), raw_syncs if isinstance(raw_syncs, list) else [])}:"
            f" {err['msg']}"
            for err in exc.errors()
        ]
        raise SyncConfigError(f"{source} is invalid:\n" + "\n".join(lines)) from None
    names = [s.name for s in parsed.syncs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SyncConfigError(f"{source}: sync names must be unique; repeated: {', '.join(dupes)}")
    return parsed.syncs


def load_syncs(path: Path) -> list[SyncSpec]:
    """Read and validate a syncs.yml file."""
    if not path.exists():
        raise SyncConfigError(
            f"{path} does not exist. Declare syncs there (see dbt_project/syncs.yml in the "
            "Headwater repository for the format), or set HEADWATER_SYNCS_FILE."
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SyncConfigError(f"{path} is not valid YAML: {exc}") from None
    return parse_syncs(data, source=str(path))


def find_sync(syncs: list[SyncSpec], name: str, source: str = "syncs.yml") -> SyncSpec:
    for sync in syncs:
        if sync.name == name:
            return sync
    known = ", ".join(s.name for s in syncs) or "(none declared)"
    raise SyncConfigError(f"No sync named {name!r} in {source}. Declared syncs: {known}")


def resolve_destination(
    sync: SyncSpec, default_base_url: str | None, environ: Mapping[str, str] | None = None
) -> DestinationConfig:
    """Base URL (HEADWATER_<KIND>_BASE_URL wins) and credentials read from the environment."""
    return resolve_destination_spec(f"sync {sync.name}", sync.destination, default_base_url,
                                    environ)


def resolve_destination_spec(
    owner: str, spec: DestinationSpec, default_base_url: str | None,
    environ: Mapping[str, str] | None = None,
) -> DestinationConfig:
    """`resolve_destination` for any declaration (`owner` names it in errors: a sync, a
    journey step)."""
    env = os.environ if environ is None else environ
    override = env.get(f"HEADWATER_{spec.kind.upper()}_BASE_URL")
    base_url = override or spec.base_url or default_base_url
    if not base_url:
        raise SyncConfigError(
            f"{owner}, field destination.base_url: required for kind {spec.kind!r} "
            f"(or set HEADWATER_{spec.kind.upper()}_BASE_URL)"
        )
    credentials: dict[str, str] = {}
    missing = []
    for name, env_name in spec.credentials.items():
        value = env.get(env_name)
        if not value:
            missing.append(f"{env_name} (destination.credentials.{name})")
        else:
            credentials[name] = value
    if missing:
        raise SyncConfigError(
            f"{owner}: environment variable(s) not set: {', '.join(missing)}. "
            "Export them before running it."
        )
    return DestinationConfig(
        kind=spec.kind, base_url=base_url.rstrip("/"), credentials=credentials,
        options=dict(spec.options),
    )
