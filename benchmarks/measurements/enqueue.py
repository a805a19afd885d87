"""Enqueue from Python: no-op jobs submitted one call each, and in batches.

Runs in the harness process on one connection (or client) per system.
Each case starts from empty tables and submits a few untimed jobs first,
so connection set-up and statement preparation stay outside the clock.
"""

from __future__ import annotations

import time

from benchmarks.context import Context
from benchmarks.results import Sample
from benchmarks.systems.base import Producer, System

NAME = "enqueue"
WARMUP_JOBS = 20


def applies_to(system: System) -> bool:
    return True


async def run(ctx: Context, system: System, round_no: int) -> list[Sample]:
    sizes = ctx.sizes
    samples = []
    for case, producer_factory in system.enqueue_paths():
        await system.reset()
        producer = await producer_factory()
        try:
            single = await _time_single(producer, sizes.enqueue_single_jobs)
            batched = await _time_batches(
                producer, sizes.enqueue_batch_jobs, sizes.enqueue_batch_size
            )
        finally:
            await producer.close()

        suffix = f" ({case})" if case else ""
        samples.append(
            Sample(
                NAME,
                "one job per call" + suffix,
                system.name,
                round_no,
                single,
                "jobs/s",
                True,
            )
        )
        samples.append(
            Sample(
                NAME,
                f"{sizes.enqueue_batch_size:,} jobs per call" + suffix,
                system.name,
                round_no,
                batched,
                "jobs/s",
                True,
            )
        )
    return samples


async def _time_single(producer: Producer, jobs: int) -> float:
    for _ in range(WARMUP_JOBS):
        await producer.submit_noop()

    started = time.perf_counter()
    for _ in range(jobs):
        await producer.submit_noop()
    return jobs / (time.perf_counter() - started)


async def _time_batches(producer: Producer, jobs: int, batch_size: int) -> float:
    await producer.submit_noop_batch(batch_size)

    calls = max(1, jobs // batch_size)
    started = time.perf_counter()
    for _ in range(calls):
        await producer.submit_noop_batch(batch_size)
    return calls * batch_size / (time.perf_counter() - started)
