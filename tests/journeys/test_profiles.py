"""The fast path's profile lookups follow real publishes (snapshots.publish), in both modes."""

from __future__ import annotations

import time

from journey_testkit import harness

from journeys.profiles import ProfileLookup


def _profiles(n: int, tag: str) -> tuple[list[dict[str, object]], list[tuple[str, str, str]]]:
    profiles = [{"profile_id": f"p{i}", "email": f"{tag}{i}@example.com", "first_name": tag}
                for i in range(n)]
    identities = [("email", str(p["email"]), str(p["profile_id"])) for p in profiles]
    return profiles, identities


def test_foreground_lookup_sees_each_publish_at_once(tmp_path):
    with harness(tmp_path) as h:
        h.publish(*_profiles(3, "a"))
        lookup = ProfileLookup(h.published)
        assert lookup.refresh().resolve({"email": "a1@example.com"}) == "p1"
        h.publish(*_profiles(3, "b"))
        index = lookup.refresh()
        assert index.resolve({"email": "b1@example.com"}) == "p1"
        assert index.resolve({"email": "a1@example.com"}) is None
        assert lookup.manifest is not None and lookup.manifest.seq == index.seq


def test_background_lookup_serves_the_old_publish_until_the_new_one_is_whole(tmp_path):
    with harness(tmp_path) as h:
        h.publish(*_profiles(3, "a"))
        lookup = ProfileLookup(h.published, background=True)
        first = lookup.refresh()  # the first load blocks: there is nothing to serve before it
        assert first.resolve({"email": "a2@example.com"}) == "p2"
        first_seq = first.seq
        h.publish(*_profiles(500, "b"))
        during = lookup.refresh()
        # The step that noticed the publish goes on with the index it had, and the manifest
        # (whose change log audience triggers read) stays the one that index came from.
        assert during is first
        assert lookup.manifest is not None and lookup.manifest.seq == first_seq
        deadline = time.monotonic() + 30
        while lookup.refresh() is first and time.monotonic() < deadline:
            time.sleep(0.01)
        swapped = lookup.refresh()
        assert swapped.seq > first_seq
        assert swapped.resolve({"email": "b499@example.com"}) == "p499"
        assert swapped.resolve({"email": "a2@example.com"}) is None
        assert lookup.manifest is not None and lookup.manifest.seq == swapped.seq
        assert swapped.profile("p499")["first_name"] == "b"
        lookup.close()
