"""Benchmark tasks for conveyor workers: CONVEYOR_TASK_MODULES=benchmarks.conveyor_tasks.

Both handlers are async and do nothing but count; the probe also records
when it started, for the pickup latency measurement.
"""

from __future__ import annotations

from typing import Any

from benchmarks import runner
from benchmarks.systems.base import SUBMITTED_NS
from conveyor import task


@task(runner.NOOP_TASK)
async def bench_noop(payload: Any) -> None:
    runner.PROBE.noop()


@task(runner.PROBE_TASK)
async def bench_probe(payload: Any) -> None:
    runner.PROBE.probe(payload[SUBMITTED_NS])
