"""Request validation against the vendors' own OpenAPI documents.

The documents are not copied into the repository: they are read at run time from
`HEADWATER_SPECS_DIR` (default `<repo root>/../shared/specs`). Without them validation is skipped
with a warning, so the stand-ins still serve (behaviour tests keep working, contract checks do not).

Only the operation's request-body schema is extracted, its `$ref`s inlined, OpenAPI 3.0
`nullable` turned into JSON-Schema types, and one validator built per operation, once.
Loading the 1.9 MB Twilio document takes ~30 ms on the reference machine.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, Draft202012Validator

log = logging.getLogger(__name__)

# Errors reported per request: a 30,000-contact body can have 30,000 violations.
MAX_VIOLATIONS = 20
# $ref nesting deeper than this is left unresolved (permissive) instead of recursing forever.
MAX_REF_DEPTH = 40


def default_specs_dir() -> Path:
    env = os.environ.get("HEADWATER_SPECS_DIR")
    if env:
        return Path(env)
    repo_root = Path(__file__).resolve().parents[2]
    return repo_root.parent / "shared" / "specs"


@dataclass(frozen=True)
class Violation:
    """One way a request breaks the vendor's schema."""

    path: str  # JSON pointer into the body, e.g. /contacts/3/email
    message: str
    keyword: str  # the JSON-Schema keyword that failed (required, maxLength...)

    @property
    def field(self) -> str:
        """The offending field in the vendor's dotted style (contacts[3].email)."""
        out = ""
        for part in self.path.strip("/").split("/"):
            if not part:
                continue
            out += f"[{part}]" if part.isdigit() else (f".{part}" if out else part)
        return out


@dataclass(frozen=True)
class OperationRef:
    """Where an operation's body schema lives: a spec file and a path to its schema."""

    filename: str
    pointer: tuple[str, ...]  # keys from the document root to the schema


def body_schema_ref(
    filename: str, path: str, method: str, content_type: str = "application/json"
) -> OperationRef:
    """OpenAPI 3.x: paths/<path>/<method>/requestBody/content/<type>/schema."""
    return OperationRef(
        filename, ("paths", path, method, "requestBody", "content", content_type, "schema")
    )


def swagger_body_ref(filename: str, path: str, method: str) -> OperationRef:
    """Swagger 2.0: the `in: body` parameter's schema (found when the document is loaded)."""
    return OperationRef(filename, ("paths", path, method, "parameters", "<body>", "schema"))


class SpecValidators:
    """Lazily loaded validators for one stand-in's operations (one instance per stand-in)."""

    def __init__(self, specs_dir: Path | None = None, sample_items: int = 50) -> None:
        self.specs_dir = specs_dir or default_specs_dir()
        self.sample_items = sample_items
        self._lock = threading.Lock()
        self._documents: dict[str, dict[str, Any] | None] = {}
        self._validators: dict[OperationRef, Any] = {}
        self.load_seconds: dict[str, float] = {}

    def available(self, filename: str) -> bool:
        return self._document(filename) is not None

    def validate(self, ref: OperationRef, body: Any, mode: str = "full") -> list[Violation]:
        """Violations of the body against the operation's schema ([] when skipped).

        mode "sample" checks every list only up to `sample_items` entries: the hot path of a
        benchmark stays cheap while the envelope and a sample of records are still checked.
        """
        if mode == "off":
            return []
        validator = self._validator(ref)
        if validator is None:
            return []
        if mode == "sample":
            body = _sampled(body, self.sample_items)
        errors = islice(validator.iter_errors(body), MAX_VIOLATIONS)
        return [
            Violation(
                "/" + "/".join(str(p) for p in e.absolute_path), e.message, str(e.validator)
            )
            for e in errors
        ]

    def _document(self, filename: str) -> dict[str, Any] | None:
        with self._lock:
            if filename in self._documents:
                return self._documents[filename]
            path = self.specs_dir / filename
            doc: dict[str, Any] | None
            try:
                import time

                started = time.perf_counter()
                with path.open("rb") as fh:
                    doc = json.load(fh)
                self.load_seconds[filename] = time.perf_counter() - started
            except FileNotFoundError:
                msg = (
                    f"vendor spec {path} not found (set HEADWATER_SPECS_DIR): request "
                    "validation against it is skipped"
                )
                warnings.warn(msg, RuntimeWarning, stacklevel=3)
                log.warning(msg)
                doc = None
            self._documents[filename] = doc
            return doc

    def _validator(self, ref: OperationRef) -> Any:
        with self._lock:
            if ref in self._validators:
                return self._validators[ref]
        doc = self._document(ref.filename)
        if doc is None:
            return None
        schema = _resolve_pointer(doc, ref.pointer)
        inlined = _inline(doc, schema, openapi30="openapi" not in doc or doc["openapi"] < "3.1")
        cls = Draft202012Validator if str(doc.get("openapi", "")) >= "3.1" else Draft4Validator
        validator = cls(inlined)
        with self._lock:
            self._validators[ref] = validator
        return validator


def _resolve_pointer(doc: dict[str, Any], pointer: tuple[str, ...]) -> Any:
    node: Any = doc
    for key in pointer:
        if key == "<body>":
            node = next(p for p in node if p.get("in") == "body")
            continue
        node = node[key]
    return node


def _ref_target(doc: dict[str, Any], ref: str) -> Any:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported, got {ref!r}")
    node: Any = doc
    for raw in ref[2:].split("/"):
        node = node[raw.replace("~1", "/").replace("~0", "~")]
    return node


def _inline(doc: dict[str, Any], schema: Any, openapi30: bool, depth: int = 0) -> Any:
    """A copy of `schema` with local $refs replaced by their targets."""
    if isinstance(schema, list):
        return [_inline(doc, s, openapi30, depth) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema and isinstance(schema["$ref"], str):
        if depth >= MAX_REF_DEPTH:
            return {}
        return _inline(doc, _ref_target(doc, schema["$ref"]), openapi30, depth + 1)
    out: dict[str, Any] = {}
    for key, value in schema.items():
        # Annotations only: dropping them keeps validators small and error messages short.
        if key in ("description", "example", "examples", "x-twilio", "title"):
            continue
        if key in ("properties", "patternProperties", "definitions", "$defs"):
            out[key] = {k: _inline(doc, v, openapi30, depth) for k, v in value.items()}
        else:
            out[key] = _inline(doc, value, openapi30, depth)
    if openapi30 and (out.pop("nullable", False) or out.pop("x-nullable", False)):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


def _sampled(body: Any, limit: int, depth: int = 0) -> Any:
    if depth > 8:
        return body
    if isinstance(body, list):
        return [_sampled(x, limit, depth + 1) for x in body[:limit]]
    if isinstance(body, dict):
        return {k: _sampled(v, limit, depth + 1) for k, v in body.items()}
    return body


def first_violation_text(violations: Iterable[Violation]) -> str:
    return "; ".join(f"{v.field or '(body)'}: {v.message}" for v in violations)
