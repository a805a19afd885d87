"""Sizes of a benchmark run, full or quick, and the options that change them."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Sizes:
    # Worker throughput: pending no-op jobs drained by each worker count.
    throughput_jobs: int
    worker_counts: tuple[int, ...]
    # Enqueue from Python: jobs submitted one call each, and in calls of a batch.
    enqueue_single_jobs: int
    enqueue_batch_jobs: int
    enqueue_batch_size: int
    # HTTP submit: seconds of load per case, client connections, jobs per batch.
    http_seconds: float
    http_single_clients: int
    http_batch_clients: int
    http_batch_size: int
    # Pickup latency: probe jobs submitted to an idle worker, seconds apart.
    latency_jobs: int
    latency_warmup_jobs: int
    latency_interval: float
    # Claim rate: finished rows in the table before the claims run.
    claim_table_sizes: tuple[int, ...]
    claim_jobs: int


FULL = Sizes(
    throughput_jobs=100_000,
    worker_counts=(1, 2),
    enqueue_single_jobs=10_000,
    enqueue_batch_jobs=100_000,
    enqueue_batch_size=1_000,
    http_seconds=10.0,
    http_single_clients=32,
    http_batch_clients=4,
    http_batch_size=1_000,
    latency_jobs=200,
    latency_warmup_jobs=5,
    latency_interval=0.020,
    claim_table_sizes=(0, 1_000_000, 10_000_000),
    claim_jobs=20_000,
)

QUICK = Sizes(
    throughput_jobs=10_000,
    worker_counts=(1, 2),
    enqueue_single_jobs=1_000,
    enqueue_batch_jobs=10_000,
    enqueue_batch_size=1_000,
    http_seconds=2.0,
    http_single_clients=32,
    http_batch_clients=4,
    http_batch_size=1_000,
    latency_jobs=100,
    latency_warmup_jobs=5,
    latency_interval=0.020,
    claim_table_sizes=(0, 200_000),
    claim_jobs=5_000,
)


def sizes_for(quick: bool, jobs: int | None) -> Sizes:
    """Pick the full or quick sizes; `jobs` replaces the throughput job count."""
    sizes = QUICK if quick else FULL
    if jobs is not None:
        sizes = replace(sizes, throughput_jobs=jobs)
    return sizes


def parse_params(items: list[str]) -> dict[str, dict[str, object]]:
    """Parse `--param SYSTEM.NAME=VALUE` items into {system: {name: value}}.

    A value that parses as JSON (numbers, true, false) is used as such;
    anything else is kept as a string.
    """
    params: dict[str, dict[str, object]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        system, dot, name = key.partition(".")
        if not sep or not dot or not system or not name:
            raise ValueError(
                f"--param {item!r} is invalid; expected SYSTEM.NAME=VALUE, "
                "for example pgqueuer.batch_size=50"
            )
        try:
            value: object = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params.setdefault(system, {})[name] = value
    return params
