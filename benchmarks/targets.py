"""The speed targets conveyor must reach, checked against one run's results."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks.results import Results

CONVEYOR = "conveyor"


@dataclass(frozen=True)
class Outcome:
    # The measured figure (a median), or None when it was not measured.
    value: float | None
    shown: str

    @property
    def measured(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Target:
    text: str
    measure: Callable[[Results], Outcome]
    passes: Callable[[float], bool]

    def check(self, results: Results) -> tuple[Outcome, bool | None]:
        outcome = self.measure(results)
        if outcome.value is None:
            return outcome, None
        return outcome, self.passes(outcome.value)


def _ratio(measurement: str, case: str, baseline: str) -> Callable[[Results], Outcome]:
    def measure(results: Results) -> Outcome:
        summary = results.ratio_summary(measurement, case, CONVEYOR, baseline)
        if summary is None:
            return Outcome(None, "not measured")
        return Outcome(summary.median, f"{summary.median:.2f}x")

    return measure


def _median(measurement: str, case: str, unit: str) -> Callable[[Results], Outcome]:
    def measure(results: Results) -> Outcome:
        summary = results.summary(measurement, case, CONVEYOR)
        if summary is None:
            return Outcome(None, "not measured")
        return Outcome(summary.median, f"{summary.median:,.1f} {unit}")

    return measure


def _claim_stability(measurement: str) -> Callable[[Results], Outcome]:
    return lambda results: _stability(results, measurement)


def _stability(results: Results, measurement: str) -> Outcome:
    """Claim rate at the largest table size over the rate on the empty table."""
    cases = [case for m, case in results.cases() if m == measurement]
    if len(cases) < 2:
        return Outcome(None, "not measured")
    empty = results.by_round(measurement, cases[0], CONVEYOR)
    largest = results.by_round(measurement, cases[-1], CONVEYOR)
    ratios = [largest[r] / empty[r] for r in sorted(largest) if empty.get(r)]
    if not ratios:
        return Outcome(None, "not measured")
    median = statistics.median(ratios)
    return Outcome(median, f"{median:.2f}x of empty at {cases[-1]}")


TARGETS = [
    Target(
        "throughput, 2 processes ≥ 1.5x PgQueuer",
        _ratio("throughput", "2 worker processes", "pgqueuer"),
        lambda v: v >= 1.5,
    ),
    Target(
        "throughput, 2 processes ≥ 0.5x raw SQL",
        _ratio("throughput", "2 worker processes", "raw"),
        lambda v: v >= 0.5,
    ),
    Target(
        "throughput, 1 process ≥ 1.5x PgQueuer",
        _ratio("throughput", "1 worker process", "pgqueuer"),
        lambda v: v >= 1.5,
    ),
    Target(
        "enqueue one at a time ≥ 0.8x raw single INSERT",
        _ratio("enqueue", "one job per call", "raw"),
        lambda v: v >= 0.8,
    ),
    Target(
        "batched enqueue ≥ 1.5x PgQueuer",
        _ratio("enqueue", "1,000 jobs per call", "pgqueuer"),
        lambda v: v >= 1.5,
    ),
    Target(
        "pickup latency p50 ≤ 3.5 ms",
        _median("pickup latency", "p50", "ms"),
        lambda v: v <= 3.5,
    ),
    Target(
        "pickup latency p99 ≤ 6 ms",
        _median("pickup latency", "p99", "ms"),
        lambda v: v <= 6.0,
    ),
    Target(
        "HTTP submit, one job per request ≥ 3,000 jobs/s",
        _median("HTTP submit", "one job per request", "jobs/s"),
        lambda v: v >= 3_000,
    ),
    Target(
        "HTTP submit, batched ≥ 50,000 jobs/s",
        _median("HTTP submit", "1,000 jobs per request", "jobs/s"),
        lambda v: v >= 50_000,
    ),
    Target(
        "claim rate (worker) at the largest table within 20% of empty",
        _claim_stability("claim rate"),
        lambda v: v >= 0.8,
    ),
    Target(
        "claim rate (store loop) at the largest table within 20% of empty",
        _claim_stability("claim rate, store loop"),
        lambda v: v >= 0.8,
    ),
    Target(
        "worker RSS ≤ 100 MB",
        _median("worker RSS", "peak, 1 worker process", "MB"),
        lambda v: v <= 100,
    ),
]
