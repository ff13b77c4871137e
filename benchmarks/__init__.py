"""Headwater's benchmarks: `python -m benchmarks [NAME ...] [--quick]`."""
