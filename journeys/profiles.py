"""Who an event is about, and what the warehouse knows of them: lookups for the fast path.

The fast path cannot wait for the warehouse (dbt holds it during builds) nor scan a table per
event, so it reads the published snapshots (headwater/snapshots.py) of `identity_map` and
`customer_profiles` into memory once per publish: a dict from normalized identifier to
profile_id, and the profiles as an Arrow table with a dict from profile_id to row. A lookup is
then a dict access (microseconds), and a new build is picked up at the next step.

Memory grows with the identifiers (about 150 bytes each: ~0.6 GB at 4M identifiers, the 1M
customer world). Subjects the warehouse does not know yet (a visitor who signed up a second
ago) resolve to no profile; the journey then uses the identifiers the events carried.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from activations.identifiers import normalize_email, normalize_phone_e164
from headwater import snapshots

# Order in which an event's identifiers pick its profile (the most specific first).
LOOKUP_ORDER = ("user_id", "email", "phone", "anonymous_id")
log = logging.getLogger(__name__)
# How often the long-lived worker looks for a newer publish (ProfileLookup.refresh).
STAT_SECONDS = 0.05


@dataclass
class ProfileIndex:
    """In-memory view of one publish; `seq` 0 means nothing is published yet."""

    seq: int = 0
    identities: dict[tuple[str, str], str] = field(default_factory=dict)
    profiles: pa.Table | None = None
    rows: dict[str, int] = field(default_factory=dict)
    columns: tuple[str, ...] = ()

    def resolve(self, identifiers: Mapping[str, str | None]) -> str | None:
        for kind in LOOKUP_ORDER:
            value = identifiers.get(kind)
            if value:
                found = self.identities.get((kind, value))
                if found is not None:
                    return found
        return None

    def profile(self, profile_id: str | None) -> dict[str, Any] | None:
        if profile_id is None or self.profiles is None:
            return None
        row = self.rows.get(profile_id)
        if row is None:
            return None
        return self.profiles.slice(row, 1).to_pylist()[0]


class ProfileLookup:
    """Keeps a ProfileIndex in step with the published manifest.

    `background`: load a new publish in a thread and swap it in when complete, for the
    long-lived worker. Building the index is seconds at a million customers (a dict entry per
    identifier), and a worker that stopped for it would hold every event in that window; with
    the swap, events keep flowing on the previous publish until the new one is whole. The first
    load blocks (there is nothing to serve before it), and so does every load when `background`
    is off (tests and the sensor's batch ticks, which want the newest publish at once).
    """

    def __init__(self, published_dir: Path, *, background: bool = False) -> None:
        self.published_dir = published_dir
        self.background = background
        self.index = ProfileIndex()
        # The manifest of the index in use (audience-entry triggers read its change log).
        self.manifest: snapshots.Manifest | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._loader: threading.Thread | None = None
        self._loaded: tuple[snapshots.Manifest, ProfileIndex] | None = None
        self._load_error: BaseException | None = None
        self._stat_at = 0.0  # monotonic time of the last look at the manifest (background)

    def refresh(self) -> ProfileIndex:
        """Reload when a newer publish exists; one stat otherwise (in the background, at most
        every STAT_SECONDS). The manifest is replaced by rename, so a new publish is a new
        inode (mtime alone has a coarse clock)."""
        if self._loader is not None:
            if self._loader.is_alive():
                return self.index
            self._finish_background_load()
        if self.background:
            # The worker steps every few ms, and a stat here costs ~0.3 ms of wall time on
            # this filesystem; a publish (once per dbt build) can wait 50 ms to be seen.
            now = time.monotonic()
            if now - self._stat_at < STAT_SECONDS:
                return self.index
            self._stat_at = now
        try:
            st = os.stat(self.published_dir / snapshots.MANIFEST_NAME)
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp is not None and stamp == self._stamp:
            return self.index
        self._stamp = stamp
        manifest = snapshots.read_manifest(self.published_dir)
        if manifest is None or manifest.seq == self.index.seq:
            self.manifest = manifest
            return self.index
        if self.background and self.index.seq:
            self._loader = threading.Thread(
                target=self._load_in_background, args=(manifest,), name="profile-index",
                daemon=True)
            self._loader.start()
            return self.index
        self.index, self.manifest = _load(self.published_dir, manifest), manifest
        return self.index

    def close(self) -> None:
        if self._loader is not None:
            self._loader.join()

    def _load_in_background(self, manifest: snapshots.Manifest) -> None:
        try:
            self._loaded = (manifest, _load(self.published_dir, manifest))
        except BaseException as exc:  # handed to the stepping thread, which decides
            self._load_error = exc

    def _finish_background_load(self) -> None:
        assert self._loader is not None
        self._loader.join()
        self._loader = None
        loaded, error = self._loaded, self._load_error
        self._loaded = self._load_error = None
        if loaded is not None:
            self.manifest, self.index = loaded
        elif isinstance(error, FileNotFoundError):
            # A newer publish pruned the files this one named: read the manifest again.
            log.info("profile snapshot replaced while loading (%s); reloading", error)
            self._stamp = None
        elif error is not None:
            raise error


def _load(folder: Path, manifest: snapshots.Manifest) -> ProfileIndex:
    index = ProfileIndex(seq=manifest.seq)
    ids = manifest.models.get(snapshots.IDENTITY_MODEL)
    if ids is not None:
        table = pq.read_table(
            folder / ids.path, columns=["identifier_type", "identifier_value", "profile_id"]
        )
        index.identities = {
            (t, v): p
            for t, v, p in zip(
                table.column(0).to_pylist(), table.column(1).to_pylist(),
                table.column(2).to_pylist(), strict=True,
            )
        }
    prof = manifest.models.get(snapshots.PROFILES_MODEL)
    if prof is not None:
        table = pq.read_table(folder / prof.path)
        table = table.drop_columns([c for c in (snapshots.ROW_HASH,) if c in table.column_names])
        index.profiles = table
        index.columns = tuple(table.column_names)
        index.rows = {p: i for i, p in enumerate(table.column("profile_id").to_pylist())}
    return index


def event_identifiers(
    user_id: str | None, anonymous_id: str | None, traits: Mapping[str, Any],
    context_traits: Mapping[str, Any], default_region: str = "US",
) -> dict[str, str | None]:
    """Normalized identifiers of one message, the way staging normalizes them (so they match
    identity_map's values): email trimmed and lower-cased, phone to E.164."""
    email = traits.get("email") or context_traits.get("email")
    phone = traits.get("phone") or context_traits.get("phone")
    return {
        "user_id": _clean(user_id),
        "anonymous_id": _clean(anonymous_id),
        "email": normalize_email(email) if email else None,
        "phone": normalize_phone_e164(phone, default_region) if phone else None,
    }


def _clean(value: object) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None
