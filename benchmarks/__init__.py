"""Benchmarks of conveyor beside PgQueuer, procrastinate and a raw SQL baseline.

Run `python -m benchmarks --help`; docs/benchmarks.md holds the method and results.
"""
