"""Headwater's Segment-compatible HTTP collector.

`headwater collect` serves the Segment HTTP Tracking API and lands every accepted message in an
append-only folder of Parquet files next to the warehouse (never in the warehouse file itself:
dbt holds its writer lock for a whole build). `collector.landing.read_sql` is how the models see
those files as part of `raw.events`.
"""

from collector.config import CollectorConfig, ConfigError

__all__ = ["CollectorConfig", "ConfigError"]
