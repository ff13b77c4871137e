"""Collector settings, resolved once per process from the environment and CLI flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from headwater.config import Settings

# Segment's documented limits: 32 KB per call or per message in a batch, 500 KB per batch.
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_BYTES = 500 * 1024


class ConfigError(ValueError):
    """The collector cannot start with these settings."""


def default_landing_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`HEADWATER_LANDING_DIR`, else `<warehouse dir>/landing` (the warehouse from the env)."""
    env = os.environ if environ is None else environ
    override = env.get("HEADWATER_LANDING_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Settings.from_env(dict(env)).duckdb_path.parent / "landing"


def parse_write_keys(raw: str) -> frozenset[str]:
    """Accepted keys: comma-separated, so a key can be rotated without downtime."""
    return frozenset(key.strip() for key in raw.split(",") if key.strip())


@dataclass(frozen=True)
class CollectorConfig:
    """Everything the collector needs; `from_env` is the normal constructor."""

    # Root of the landing area: events/ and quarantine/ live under it.
    landing_dir: Path
    # Write keys that may send (HEADWATER_WRITE_KEY, comma-separated); never logged.
    write_keys: frozenset[str] = field(repr=False)
    # Interface to bind; loopback by default so that exposing it is a deliberate choice.
    host: str = "127.0.0.1"
    # TCP port; 0 picks a free one (tests).
    port: int = 8088
    # Largest single call (/v1/track…) and largest message inside a batch, decompressed.
    max_message_bytes: int = MAX_MESSAGE_BYTES
    # Largest /v1/batch body, decompressed.
    max_batch_bytes: int = MAX_BATCH_BYTES
    # Requests queued while a file is written share the next file (off: one file per request).
    group_commit: bool = True
    # Extra wait for more requests before writing, in seconds; 0 adds no latency when idle.
    group_commit_seconds: float = 0.0
    # Busy linger: when a request arrives within this long of the previous one, the writer
    # waits until this long after its arrival for more to share its file (collector/writer.py).
    busy_linger_seconds: float = 0.003
    # Requests waiting for the writer before new ones get 503 (back-pressure, bounded memory).
    queue_capacity: int = 1024
    # messageIds remembered for deduplication (rebuilt from the newest landing files on start).
    dedup_capacity: int = 200_000
    # fsync files and directories before acknowledging; only tests of other parts turn it off.
    fsync: bool = True
    # Also send each landed file's rows to the fast-path worker (collector/handoff.py).
    handoff: bool = True

    @property
    def events_dir(self) -> Path:
        return self.landing_dir / "events"

    @property
    def quarantine_dir(self) -> Path:
        return self.landing_dir / "quarantine"

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: object
    ) -> CollectorConfig:
        env = os.environ if environ is None else environ
        keys = parse_write_keys(env.get("HEADWATER_WRITE_KEY", ""))
        if not keys:
            raise ConfigError(
                "HEADWATER_WRITE_KEY is not set: export the write key(s) your SDKs send "
                "(comma-separated to accept several)."
            )
        values: dict[str, object] = {
            "landing_dir": default_landing_dir(env),
            "write_keys": keys,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        config = cls(**values)  # type: ignore[arg-type]
        config.validate()
        return config

    def validate(self) -> None:
        if not self.write_keys:
            raise ConfigError("At least one write key is required.")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"Port {self.port} is out of range.")
        if self.max_message_bytes <= 0 or self.max_batch_bytes < self.max_message_bytes:
            raise ConfigError("Size limits must be positive and a batch at least one message.")
        if self.queue_capacity <= 0 or self.dedup_capacity < 0:
            raise ConfigError("queue_capacity must be positive and dedup_capacity not negative.")
