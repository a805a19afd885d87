"""Pickup latency: from submit to handler start, on an idle worker.

One worker process starts on an empty queue and idles for a second. The
harness then submits probe jobs on a fixed 20 ms grid, each carrying
time.monotonic_ns() read just before its submit call; the probe handler
reads the same clock (CLOCK_MONOTONIC, shared by every process) as its
first act. A few warm-up probes go first and are left out.
"""

from __future__ import annotations

import asyncio
import time

from benchmarks.context import Context
from benchmarks.processes import WorkerProcess, start_workers, stop_workers
from benchmarks.results import Sample, percentile
from benchmarks.systems.base import Producer, System

NAME = "pickup latency"
IDLE_SECONDS = 1.0
WAIT_SECONDS = 30.0


class LatencyFailed(RuntimeError):
    """The worker did not start every probe job."""


def applies_to(system: System) -> bool:
    return True


async def run(ctx: Context, system: System, round_no: int) -> list[Sample]:
    sizes = ctx.sizes
    latencies_ms = await measure(
        ctx,
        system,
        sizes.latency_jobs,
        sizes.latency_warmup_jobs,
        sizes.latency_interval,
    )
    detail = {"jobs": len(latencies_ms), "max_ms": round(max(latencies_ms), 3)}
    return [
        Sample(
            NAME,
            f"p{q}",
            system.name,
            round_no,
            percentile(latencies_ms, q),
            "ms",
            False,
            detail,
        )
        for q in (50, 95, 99)
    ]


async def measure(
    ctx: Context, system: System, jobs: int, warmup: int, interval: float
) -> list[float]:
    await system.reset()
    [worker] = await start_workers(
        system.worker_module, system.worker_args(), 1, ctx.log_dir, system.worker_env()
    )
    try:
        worker.send("go")
        await asyncio.sleep(IDLE_SECONDS)
        producer = await system.open_producer()
        try:
            await _submit_on_grid(producer, warmup, interval)
            await _wait_samples(worker, warmup)
            await asyncio.sleep(IDLE_SECONDS / 2)
            await _submit_on_grid(producer, jobs, interval)
            await _wait_samples(worker, warmup + jobs)
        finally:
            await producer.close()
        samples = await worker.samples()
    except BaseException:
        await stop_workers([worker], force=True)
        raise
    await stop_workers([worker])

    measured = sorted(samples)[warmup:]
    return [(started - submitted) / 1e6 for submitted, started in measured]


async def _submit_on_grid(producer: Producer, jobs: int, interval: float) -> None:
    """Submit `jobs` probes at start + i * interval, however long each submit takes."""
    start = time.monotonic()
    for index in range(jobs):
        delay = start + index * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await producer.submit_probe(time.monotonic_ns())


async def _wait_samples(worker: WorkerProcess, expected: int) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        _, samples = await worker.stat()
        if samples >= expected:
            return
        if time.monotonic() > deadline:
            raise LatencyFailed(
                f"the worker started {samples} of {expected} probe jobs "
                f"within {WAIT_SECONDS:.0f} s; log {worker.log_path}"
            )
        await asyncio.sleep(0.05)
