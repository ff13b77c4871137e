"""Destination clients, one module per vendor, all speaking `activations.destinations.base`."""
