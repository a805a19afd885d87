"""Benchmarks of conveyor beside PgQueuer, procrastinate and a raw SQL baseline.

Run `python -m benchmarks --help`; docs/benchmarks.md describes the method and the results.
"""
