"""Personalized fields and messages: Jinja templates over an audience row.

Sandboxed (analytics engineers write them, not application developers) and StrictUndefined (a
typo must fail the record with a clear reason, not send "Hi ,"). Compiled once per sync.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.exceptions import TemplateError
from jinja2.sandbox import SandboxedEnvironment

from activations.config import SyncConfigError


class TemplateRenderError(ValueError):
    """A template failed for one record; the message names the field and the reason."""


@dataclass(frozen=True)
class CompiledTemplates:
    """A sync's templates, ready to render; `variables` are the audience columns they read."""

    sync_name: str
    templates: Mapping[str, Any]
    variables: frozenset[str]

    def render(self, row: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        # Only the names the templates read: Jinja copies its whole context per render, and a
        # journey step's context holds every profile column. A name the row lacks stays
        # undefined (StrictUndefined raises, as with the whole row).
        scope = {k: row[k] for k in self.variables if k in row}
        for dest_field, template in self.templates.items():
            try:
                out[dest_field] = template.render(scope)
            except TemplateError as exc:
                raise TemplateRenderError(
                    f"template {dest_field!r}: {type(exc).__name__}: {exc}"
                ) from None
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise TemplateRenderError(f"template {dest_field!r}: {exc}") from None
        return out


def make_environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True
    )
    return env


def compile_templates(sync_name: str, sources: Mapping[str, str]) -> CompiledTemplates:
    """Parse and compile every template of a sync; syntax errors name the sync and field."""
    env = make_environment()
    compiled: dict[str, Any] = {}
    variables: set[str] = set()
    for dest_field, source in sources.items():
        try:
            ast = env.parse(source)
        except TemplateSyntaxError as exc:
            raise SyncConfigError(
                f"sync {sync_name}, field templates.{dest_field}: line {exc.lineno}: {exc.message}"
            ) from None
        variables |= meta.find_undeclared_variables(ast)
        compiled[dest_field] = env.from_string(source)
    return CompiledTemplates(sync_name, compiled, frozenset(variables))
