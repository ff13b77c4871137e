"""Which models the dbt project has, read from dbt's own parse of the project.

Audience leaves are resolved against the manifest rather than by reading YAML and SQL configs by
hand: tags come from folder config in dbt_project.yml, `config()` blocks and property files, and
only dbt knows how they combine.

The parse runs on a shadow copy of the project (directories recreated, files symlinked) without
the generated audience folder: a generated model that refs a segment which was since renamed
would otherwise make the parse fail, and the generator could never repair it. The shadow lives
at a stable path under the caller's work folder so that dbt's partial parsing applies, and the
resulting catalog is cached there keyed on the project files' names, sizes and mtimes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

SEGMENT_TAG = "segment"
AUDIENCE_FOLDER = Path("models") / "audiences"
# Top-level entries of a dbt project that never belong in the shadow copy.
_SKIPPED_TOP_LEVEL = {"target", "logs", "dbt_packages", ".user.yml", "models"}


class CatalogError(RuntimeError):
    """The dbt project could not be parsed; the message carries dbt's reason."""


@dataclass(frozen=True)
class ModelInfo:
    """One dbt model, as far as audiences care."""

    name: str
    fqn: tuple[str, ...]
    tags: frozenset[str]
    path: str


@dataclass(frozen=True)
class Catalog:
    """The models of a parsed project (the audience folder left out)."""

    models: dict[str, ModelInfo] = field(default_factory=dict)

    @property
    def segments(self) -> list[str]:
        """Names of the segment models (tag `segment`), sorted."""
        return sorted(m.name for m in self.models.values() if SEGMENT_TAG in m.tags)

    def is_segment(self, name: str) -> bool:
        model = self.models.get(name)
        return model is not None and SEGMENT_TAG in model.tags

    def with_tag(self, tag: str) -> list[ModelInfo]:
        return sorted((m for m in self.models.values() if tag in m.tags), key=lambda m: m.name)

    def matching_fqn(self, value: str) -> list[ModelInfo]:
        """Models dbt's `fqn:` method would select: by name, or a dotted prefix of the fqn."""
        parts = tuple(value.split("."))
        found = []
        for m in self.models.values():
            by_name = len(parts) == 1 and m.name == value
            # a dotted path matches from the package name or from the first folder
            by_path = parts in (m.fqn[: len(parts)], m.fqn[1 : 1 + len(parts)])
            if by_name or by_path:
                found.append(m)
        return sorted(found, key=lambda m: m.name)

    @classmethod
    def from_models(cls, models: Iterable[ModelInfo]) -> Catalog:
        return cls({m.name: m for m in models})


def build_shadow_project(project_dir: Path, shadow_dir: Path) -> Path:
    """Mirror `project_dir` at `shadow_dir` without the audience folder; returns shadow_dir.

    dbt walks model folders with os.walk, which does not descend into symlinked directories, so
    the models tree is recreated as real directories holding symlinked files. Everything else is
    symlinked whole. The mirror is rebuilt each call (it is a few hundred links at most).
    """
    if shadow_dir.exists():
        shutil.rmtree(shadow_dir / "models", ignore_errors=True)
        for entry in shadow_dir.iterdir():
            if entry.is_symlink():
                entry.unlink()
    shadow_dir.mkdir(parents=True, exist_ok=True)
    for entry in project_dir.iterdir():
        if entry.name not in _SKIPPED_TOP_LEVEL:
            (shadow_dir / entry.name).symlink_to(entry.resolve())
    models = project_dir / "models"
    skipped = (project_dir / AUDIENCE_FOLDER).resolve()
    for root, dirs, files in os.walk(models):
        root_path = Path(root)
        if root_path.resolve() == skipped:
            dirs.clear()
            continue
        target = shadow_dir / root_path.relative_to(project_dir)
        target.mkdir(parents=True, exist_ok=True)
        for name in files:
            (target / name).symlink_to((root_path / name).resolve())
    return shadow_dir


def load_catalog(project_dir: Path, work_dir: Path) -> Catalog:
    """Parse the project (audience folder excluded) with dbt and return its models.

    `work_dir` holds the shadow project, dbt's target and logs; keep it stable between calls so
    dbt can parse partially. Nothing is written to the real project folder.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(work_dir / ".lock"):
        cache = work_dir / "catalog.json"
        key = _fingerprint(project_dir)
        cached = _read_cache(cache, key)
        if cached is not None:
            return cached
        catalog = _parse(project_dir, work_dir)
        _write_cache(cache, key, catalog)
        return catalog


def _fingerprint(project_dir: Path) -> str:
    """Changes whenever a file dbt would parse (outside the audience folder) changes.

    A dbt parse costs seconds; `headwater audience list` should not pay it when nothing moved.
    """
    from dbt.version import __version__ as dbt_version

    digest = hashlib.sha256(dbt_version.encode())
    skipped = (project_dir / AUDIENCE_FOLDER).resolve()
    for root, dirs, files in os.walk(project_dir):
        root_path = Path(root)
        if root_path == project_dir:
            dirs[:] = [d for d in dirs if d not in _SKIPPED_TOP_LEVEL - {"models"}]
            # selectors.yml is read (and validated) on its own; editing it moves no model
            files = [f for f in files if f != "selectors.yml"]
        if root_path.resolve() == skipped:
            dirs.clear()
            continue
        dirs.sort()
        for name in sorted(files):
            stat = (root_path / name).stat()
            rel = (root_path / name).relative_to(project_dir)
            digest.update(f"{rel}\0{stat.st_mtime_ns}\0{stat.st_size}\0".encode())
    return digest.hexdigest()


def _read_cache(path: Path, key: str) -> Catalog | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("key") != key:
        return None
    return Catalog.from_models(
        ModelInfo(m["name"], tuple(m["fqn"]), frozenset(m["tags"]), m["path"])
        for m in data["models"]
    )


def _write_cache(path: Path, key: str, catalog: Catalog) -> None:
    models = [
        {"name": m.name, "fqn": list(m.fqn), "tags": sorted(m.tags), "path": m.path}
        for m in catalog.models.values()
    ]
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"key": key, "models": models}))
    tmp.replace(path)


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise processes sharing a work folder (two CLIs, parallel tests): the shadow
    project is rebuilt in place, and a parse must not see another one half-built."""
    try:
        import fcntl
    except ImportError:  # not on POSIX: no other process is expected to share the folder
        yield
        return
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _parse(project_dir: Path, work_dir: Path) -> Catalog:
    from dbt.cli.main import dbtRunner

    shadow = build_shadow_project(project_dir, work_dir / "project")
    env_before = os.environ.get("DBT_SEND_ANONYMOUS_USAGE_STATS")
    os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    try:
        result = dbtRunner().invoke(
            [
                "parse",
                "--project-dir",
                str(shadow),
                "--profiles-dir",
                str(shadow),
                # Parsing never connects, and tags do not depend on the target: always use the
                # embedded one so that no Snowflake credentials are needed to list audiences.
                "--target",
                "duckdb",
                "--target-path",
                str(work_dir / "target"),
                "--log-path",
                str(work_dir / "logs"),
                "--quiet",
            ]
        )
    finally:
        if env_before is None:
            os.environ.pop("DBT_SEND_ANONYMOUS_USAGE_STATS", None)
        else:
            os.environ["DBT_SEND_ANONYMOUS_USAGE_STATS"] = env_before
    if not result.success or result.result is None:
        reason = result.exception or "see the dbt log in " + str(work_dir / "logs")
        raise CatalogError(
            f"dbt could not parse the project at {project_dir}: {reason}\n"
            "Fix the project (`dbt parse` shows the same error), then run it again."
        )
    from dbt.contracts.graph.manifest import Manifest
    from dbt.contracts.graph.nodes import ModelNode

    manifest = result.result
    if not isinstance(manifest, Manifest):
        raise CatalogError(f"dbt parse returned {type(manifest).__name__}, not a manifest.")
    models = [
        ModelInfo(
            name=node.name,
            fqn=tuple(node.fqn),
            tags=frozenset(node.tags),
            path=node.original_file_path,
        )
        for node in manifest.nodes.values()
        if isinstance(node, ModelNode)
    ]
    return Catalog.from_models(models)
