"""Journey steps leave through `activations/`: the same destination clients, HTTP layer (retries,
Retry-After, rate limits) and templates as syncs. This module only builds a client per step,
lazily, and turns a step's context into the destination's fields."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from activations.config import SyncConfigError, resolve_destination_spec
from activations.destinations import destination_class
from activations.destinations.base import (
    Channel,
    Destination,
    DestinationConfigError,
)
from activations.engine import consent_channel, http_client
from activations.http import HttpClient
from activations.templates import CompiledTemplates, compile_templates
from journeys.config import Journey, JourneyConfigError, Step


class StepClient:
    """One step's destination, channel and field mapping."""

    def __init__(self, journey: Journey, step: Step) -> None:
        self.owner = f"journey {journey.name}, step {step.name}"
        action = step.action
        self.action = action
        self.cls = destination_class(action.destination.kind)
        try:
            channel = consent_channel(action.destination.kind, self.cls, action.channel)
        except ValueError as exc:
            raise JourneyConfigError(f"{self.owner}, field channel: {exc}") from None
        self.channel: Channel = channel
        try:
            self.templates: CompiledTemplates = compile_templates(self.owner, action.templates)
        except SyncConfigError as exc:
            raise JourneyConfigError(str(exc)) from None
        self.columns = {**action.identifiers, **action.fields}
        self._destination: Destination | None = None
        self._http: HttpClient | None = None

    def destination(self, environ: Mapping[str, str] | None = None) -> Destination:
        if self._destination is None:
            config = resolve_destination_spec(
                self.owner, self.action.destination, self.cls.default_base_url, environ
            )
            self._http = http_client(self.action.retry, None, self.cls.default_rate_limit)
            try:
                self._destination = self.cls(config, self._http)
            except DestinationConfigError as exc:
                self.close()
                raise JourneyConfigError(f"{self.owner}: {exc}") from None
        return self._destination

    def missing_identifier(self, context: Mapping[str, Any]) -> str | None:
        for dest, column in self.action.identifiers.items():
            if context.get(column) in (None, ""):
                return f"no {column} for identifier {dest}"
        return None

    def fields(self, context: Mapping[str, Any]) -> dict[str, Any]:
        """Mapped columns and rendered templates (TemplateRenderError for a bad record)."""
        out = {dest: _jsonable(context.get(col)) for dest, col in self.columns.items()}
        out.update(self.templates.render(context))
        return out

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
        self._http = None
        self._destination = None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
