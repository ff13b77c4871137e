"""Local stand-ins for the destinations: real HTTP servers on 127.0.0.1 that follow each vendor's
contract, keep state, validate requests against the vendor's OpenAPI document and inject faults.

In a test::

    with SendGridStandin(faults=FaultPlan(rate_429=0.1, seed=1)) as sg:
        ...  # point the client at sg.url, then inspect sg.members(list_id)

As a process: ``python -m activations.standins sendgrid --port 0 --state-file s.json``
prints its URL on the first line of stdout and serves until killed.
"""

from __future__ import annotations

from importlib import import_module

from activations.standins.core import Standin, StandinConfig
from activations.standins.faults import Fault, FaultPlan

# Stand-in name -> "module:Class"; imported on demand so one vendor's import cost is paid alone.
REGISTRY: dict[str, str] = {
    "webhook": "activations.standins.webhook:WebhookStandin",
    "sendgrid": "activations.standins.sendgrid:SendGridStandin",
    "braze": "activations.standins.braze:BrazeStandin",
    "klaviyo": "activations.standins.klaviyo:KlaviyoStandin",
    "iterable": "activations.standins.iterable:IterableStandin",
    "twilio": "activations.standins.twilio:TwilioStandin",
    "meta": "activations.standins.meta:MetaStandin",
    "google_ads": "activations.standins.google_ads:GoogleAdsStandin",
}


def standin_class(name: str) -> type[Standin]:
    """The stand-in class registered under `name` (KeyError lists the known names)."""
    try:
        target = REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown stand-in {name!r}; known: {', '.join(sorted(REGISTRY))}") from None
    module, _, cls = target.partition(":")
    return getattr(import_module(module), cls)


__all__ = ["REGISTRY", "Fault", "FaultPlan", "Standin", "StandinConfig", "standin_class"]
