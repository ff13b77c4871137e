"""Measurement: the figures of the measurement dbt models, and the static HTML report."""
