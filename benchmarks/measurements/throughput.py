"""Worker throughput: pending no-op jobs drained by 1 and by 2 worker processes.

The jobs are inserted through the system's batch API before any worker
starts. The workers start, connect and report ready; the clock starts when
all of them are sent `go` and stops at the first check that finds no
unfinished job in the database, so completions still buffered in a worker
count as unfinished. The peak RSS of each worker process is read from
/proc at the end of the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from benchmarks.context import Context
from benchmarks.processes import WorkerProcess, start_workers, stop_workers
from benchmarks.results import Sample
from benchmarks.systems.base import System

NAME = "throughput"
RSS = "worker RSS"

# Give up when the handled count has not moved for this long.
STALL_SECONDS = 30.0


class DrainFailed(RuntimeError):
    """The workers did not finish the jobs."""


@dataclass(frozen=True)
class Drain:
    jobs: int
    seconds: float
    # Jobs handled by each worker process, and its peak RSS in bytes.
    handled: list[int]
    peak_rss: list[int]
    # Database counters and CPU time per job while draining.
    per_job: dict[str, float]

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


def applies_to(system: System) -> bool:
    return True


def case_name(workers: int) -> str:
    return f"{workers} worker process" + ("es" if workers > 1 else "")


async def run(ctx: Context, system: System, round_no: int) -> list[Sample]:
    samples = []
    jobs = system.throughput_jobs(ctx.sizes.throughput_jobs)
    for workers in ctx.sizes.worker_counts:
        drain = await drain_jobs(ctx, system, jobs, workers)
        case = case_name(workers)
        detail = {
            "jobs": jobs,
            "seconds": round(drain.seconds, 4),
            "handled": drain.handled,
            "per_job": drain.per_job,
        }
        samples.append(
            Sample(
                NAME, case, system.name, round_no, drain.rate, "jobs/s", True, detail
            )
        )
        samples.append(
            Sample(
                RSS,
                f"peak, {case}",
                system.name,
                round_no,
                max(drain.peak_rss) / 1e6,
                "MB",
                False,
                {"per_process_mb": [round(b / 1e6, 1) for b in drain.peak_rss]},
            )
        )
    return samples


async def drain_jobs(ctx: Context, system: System, jobs: int, workers: int) -> Drain:
    """Empty the system's tables, add `jobs` pending jobs and drain them."""
    await system.reset()
    return await add_and_drain(ctx, system, jobs, workers)


async def add_and_drain(ctx: Context, system: System, jobs: int, workers: int) -> Drain:
    """Add `jobs` pending jobs, then time `workers` processes draining them."""
    monitor = await asyncpg.connect(system.dsn)
    try:
        after_id = await system.last_id(monitor)
        await system.fill(jobs)
        await system.analyze()
        processes = await start_workers(
            system.worker_module,
            system.worker_args(),
            workers,
            ctx.log_dir,
            system.worker_env(),
        )
        try:
            await _checkpoint(monitor)
            counters_before = await _counters(system.dsn)
            server_cpu_before = await _server_cpu(monitor)
            worker_cpu_before = _workers_cpu(processes)
            started = time.perf_counter()
            for process in processes:
                process.send("go")

            handled = await _wait_handled(processes, jobs)
            finished = await _wait_finished(system, monitor, after_id)
            peak_rss = [p.peak_rss_bytes() for p in processes]
            server_cpu = _cpu_used(server_cpu_before, await _server_cpu(monitor))
            worker_cpu = _workers_cpu(processes) - worker_cpu_before
        except BaseException:
            await stop_workers(processes, force=True)
            raise
        await stop_workers(processes)
    finally:
        await monitor.close()

    per_job = await _work_per_job(system.dsn, counters_before, jobs)
    per_job["worker CPU us"] = round(worker_cpu / jobs * 1e6, 1)
    per_job["server CPU us"] = round(server_cpu / jobs * 1e6, 1)
    return Drain(jobs, finished - started, handled, peak_rss, per_job)


COUNTERS = {
    "transactions": "xact_commit + xact_rollback",
    "rows inserted": "tup_inserted",
    "rows updated": "tup_updated",
    "rows deleted": "tup_deleted",
}


async def _counters(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        columns = ", ".join(f'{sql} AS "{name}"' for name, sql in COUNTERS.items())
        row = await connection.fetchrow(
            f"SELECT {columns} FROM pg_stat_database WHERE datname = current_database()"
        )
    finally:
        await connection.close()
    return {name: int(row[name]) for name in COUNTERS}


async def _work_per_job(
    dsn: str, before: dict[str, int], jobs: int
) -> dict[str, float]:
    """Database counters of the drain divided by its jobs.

    The workers' backends report their counters when they exit; the wait
    lets the last reports land. The harness's own end checks add a few
    read-only transactions, which over thousands of jobs round to nothing.
    """
    await asyncio.sleep(1.0)
    after = await _counters(dsn)
    return {name: round((after[name] - before[name]) / jobs, 2) for name in COUNTERS}


async def _server_cpu(monitor: asyncpg.Connection) -> dict[int, float]:
    """CPU seconds used so far by each server process of this database.

    Read from /proc, so it needs the server on this machine and a user that
    may read its processes; where it cannot, the result is empty.
    """
    pids = await monitor.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    used = {}
    for row in pids:
        seconds = _process_cpu(row["pid"])
        if seconds is not None:
            used[row["pid"]] = seconds
    return used


def _workers_cpu(processes: list[WorkerProcess]) -> float:
    """CPU seconds used so far by the worker processes together."""
    return sum(_process_cpu(process.pid) or 0.0 for process in processes)


def _process_cpu(pid: int) -> float | None:
    """User plus system CPU seconds of a process, from /proc/PID/stat."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Fields after the command name, which is in parentheses: utime and
    # stime are the 12th and 13th of them (proc(5) numbers them 14 and 15).
    utime, stime = stat.rsplit(")", 1)[1].split()[11:13]
    return (int(utime) + int(stime)) / os.sysconf("SC_CLK_TCK")


def _cpu_used(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the server processes used between two readings.

    A process started in between counts from zero; one that ended in
    between is missed, which only happens if a worker reconnects.
    """
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


async def _checkpoint(monitor: asyncpg.Connection) -> None:
    """Flush dirty pages now, so a checkpoint is less likely during the drain."""
    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
        await monitor.execute("CHECKPOINT")


async def _wait_handled(processes: list[WorkerProcess], jobs: int) -> list[int]:
    """Poll the workers until their handlers have run `jobs` times in total."""
    last_total = -1
    last_progress = time.perf_counter()
    while True:
        stats = await asyncio.gather(*(p.stat() for p in processes))
        handled = [h for h, _ in stats]
        total = sum(handled)
        if total >= jobs:
            return handled

        now = time.perf_counter()
        if total != last_total:
            last_total, last_progress = total, now
        elif now - last_progress > STALL_SECONDS:
            raise DrainFailed(
                f"workers handled {total} of {jobs} jobs and then nothing "
                f"for {STALL_SECONDS:.0f} s; see logs {[str(p.log_path) for p in processes]}"
            )
        await asyncio.sleep(0.02)


async def _wait_finished(
    system: System, monitor: asyncpg.Connection, after_id: int
) -> float:
    """Return the start time of the first check that saw no unfinished job.

    A check that starts after the last completion committed returns zero, so
    the drain ended between the previous check's start and this one's.
    Checks are spaced by at least twice their own duration, so that they
    take at most a third of one core from the system under test.
    """
    left = -1
    last_progress = time.perf_counter()
    while True:
        checked_at = time.perf_counter()
        count = await system.unfinished(monitor, after_id)
        if count == 0:
            return checked_at

        now = time.perf_counter()
        if count != left:
            left, last_progress = count, now
        elif now - last_progress > STALL_SECONDS:
            raise DrainFailed(
                f"{left} jobs stayed unfinished for {STALL_SECONDS:.0f} s "
                "after every handler had run"
            )
        await asyncio.sleep(max(0.002, 2 * (now - checked_at)))
