"""The Dagster code location: Dagster decides *when*; dbt decides *who*, activations *how*.

Load it with `dagster dev -m orchestration.definitions` (or `headwater ui`).
"""
