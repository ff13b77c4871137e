"""Destination clients, one module per vendor, all speaking `activations.destinations.base`.

Register a client by adding its kind here; modules are imported only when a sync uses them.
"""

from __future__ import annotations

import importlib
from typing import Any

from activations.destinations.base import DestinationConfigError

# kind (syncs.yml destination.kind) -> "module:Class"
REGISTRY: dict[str, str] = {
    "webhook": "activations.destinations.webhook:WebhookDestination",
    "sendgrid": "activations.destinations.sendgrid:SendGridDestination",
    "braze": "activations.destinations.braze:BrazeDestination",
    "klaviyo": "activations.destinations.klaviyo:KlaviyoDestination",
    "twilio": "activations.destinations.twilio:TwilioDestination",
    "iterable": "activations.destinations.iterable:IterableDestination",
    "meta": "activations.destinations.meta:MetaDestination",
    "google_ads": "activations.destinations.google_ads:GoogleAdsDestination",
}


def destination_class(kind: str) -> Any:
    """The client class for a destination kind; a clear error for unknown kinds."""
    target = REGISTRY.get(kind)
    if target is None:
        raise DestinationConfigError(
            f"Unknown destination kind {kind!r}; available: {', '.join(sorted(REGISTRY))}"
        )
    module_name, _, cls_name = target.partition(":")
    return getattr(importlib.import_module(module_name), cls_name)
