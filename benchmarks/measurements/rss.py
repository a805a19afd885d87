"""Peak RSS of a worker process: VmHWM from /proc after draining the jobs.

The throughput measurement records it for every drain; this module runs
one drain with one worker process when throughput is not selected.
"""

from __future__ import annotations

from benchmarks.context import Context
from benchmarks.measurements import throughput
from benchmarks.results import Sample
from benchmarks.systems.base import System

NAME = throughput.RSS


def applies_to(system: System) -> bool:
    return True


async def run(ctx: Context, system: System, round_no: int) -> list[Sample]:
    jobs = system.throughput_jobs(ctx.sizes.throughput_jobs)
    drain = await throughput.drain_jobs(ctx, system, jobs, workers=1)
    return [
        Sample(
            NAME,
            f"peak, {throughput.case_name(1)}",
            system.name,
            round_no,
            max(drain.peak_rss) / 1e6,
            "MB",
            False,
        )
    ]
