"""Local stand-ins for `headwater demo`: every destination the declared syncs need, each in its
own process on 127.0.0.1 (port chosen by the OS), with the environment that points the syncs at
them (HEADWATER_<KIND>_BASE_URL and the credential variables each sync names).

    with DemoStandins.for_syncs(specs, state_dir) as standins:
        env = standins.environ(specs)          # pass to run_sync(..., environ=env)
        ...
        standins.holds(spec)                   # what the stand-in holds for that sync

On exit each stand-in is stopped with SIGTERM, which writes its state file
`<state_dir>/<kind>.json` one last time: the demo leaves them behind for a look afterwards.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from activations.config import DestinationSpec, SyncSpec
from activations.standins import REGISTRY, standin_class
from activations.standins.process import StandinProcess

# A destination credential name that differs from the stand-in's config field of the same value.
_CREDENTIAL_FIELDS: dict[tuple[str, str], str] = {("webhook", "signing_secret"): "secret"}


def standin_credentials(kind: str) -> dict[str, str]:
    """The credentials a stand-in accepts (its default config), by destination credential name."""
    config = standin_class(kind).default_config()
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    out = {name: str(v) for name, v in values.items() if isinstance(v, str)}
    for (k, cred), field in _CREDENTIAL_FIELDS.items():
        if k == kind:
            out[cred] = str(values[field])
    return out


class DemoStandins:
    """The stand-ins for a set of syncs, started as subprocesses."""

    def __init__(self, kinds: Sequence[str], state_dir: Path) -> None:
        unknown = sorted(set(kinds) - set(REGISTRY))
        if unknown:
            raise ValueError(f"no local stand-in for destination kind(s) {unknown}")
        self.state_dir = state_dir
        self.processes: dict[str, StandinProcess] = {
            kind: StandinProcess(kind, port=0, state_file=state_dir / f"{kind}.json")
            for kind in dict.fromkeys(kinds)
        }

    @classmethod
    def for_syncs(cls, specs: Sequence[SyncSpec], state_dir: Path) -> DemoStandins:
        return cls([s.destination.kind for s in specs], state_dir)

    def start(self) -> DemoStandins:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        try:
            for proc in self.processes.values():
                proc.start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop()
            proc._close_pipes()

    def __enter__(self) -> DemoStandins:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def environ(self, specs: Sequence[SyncSpec], base: Mapping[str, str] | None = None
                ) -> dict[str, str]:
        """`base` plus base URLs and test credentials for `specs` (the stand-ins' own values)."""
        return self.destinations_environ([s.destination for s in specs], base)

    def destinations_environ(self, destinations: Sequence[DestinationSpec],
                             base: Mapping[str, str] | None = None) -> dict[str, str]:
        """`environ` for any destination declarations (syncs' or journey steps')."""
        env = dict(base or {})
        for destination in destinations:
            kind = destination.kind
            env[f"HEADWATER_{kind.upper()}_BASE_URL"] = self.processes[kind].url
            accepted = standin_credentials(kind)
            for cred, env_name in destination.credentials.items():
                if cred in accepted:
                    env[env_name] = accepted[cred]
        return env

    def states(self) -> dict[str, dict[str, Any]]:
        """Each stand-in's state snapshot, read over its admin route."""
        return {kind: proc.state() for kind, proc in self.processes.items()}


def sha256(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def holdings(spec: SyncSpec, state: Mapping[str, Any]) -> set[str]:
    """The identifiers a stand-in holds for one sync: list members, audience members, message
    recipients or stored record keys, as the stand-in stores them (hashed for ad platforms)."""
    kind, opts = spec.destination.kind, spec.destination.options
    if kind == "sendgrid":
        return set(state.get("lists", {}).get(str(opts.get("list_id")), []))
    if kind == "meta":
        return set(state.get("audiences", {}).get(str(opts.get("audience_id")), []))
    if kind == "google_ads":
        cid = str(opts.get("customer_id", "")).replace("-", "")
        name = f"customers/{cid}/userLists/{opts.get('user_list_id')}"
        return set(state.get("user_lists", {}).get(name, []))
    if kind == "braze":
        audience = opts.get("audience")
        attribute = opts.get("audience_attribute", "headwater_audiences")
        return {uid for uid, user in state.get("users", {}).items()
                if audience in (user.get(attribute) or [])}
    if kind == "twilio":
        return {m["to"] for m in state.get("messages", [])}
    if kind == "webhook":
        return webhook_members(spec, state)
    if kind in ("klaviyo", "iterable"):
        return set(state.get("lists", {}).get(str(opts.get("list_id")), []))
    return set()


def webhook_members(spec: SyncSpec, state: Mapping[str, Any]) -> set[str]:
    """Profiles a webhook receiver holds for a sync: for append, those messaged; for mirror,
    those whose latest stored record is not a removal (records arrive in order per profile)."""
    path = str(spec.destination.options.get("path", "")) or "/"
    latest: dict[str, str] = {}
    for message in state.get("messages", []):
        if message.get("path") != path or not isinstance(message.get("body"), dict):
            continue
        for record in message["body"].get("records", []):
            latest[str(record.get("profile_id"))] = str(record.get("action"))
    return {p for p, action in latest.items() if action != "remove"}


def describe_holdings(spec: SyncSpec, state: Mapping[str, Any]) -> str:
    n = len(holdings(spec, state))
    kind = spec.destination.kind
    what = {
        "sendgrid": "contacts on the list",
        "meta": "hashed members in the custom audience",
        "google_ads": "hashed identifiers in the user list",
        "braze": "users with the audience attribute",
        "twilio": "phones texted",
        "webhook": "profiles received",
    }.get(kind, "members")
    return f"{n:,} {what}"
