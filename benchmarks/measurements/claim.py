"""Claim rate against table size: draining jobs beside many finished rows.

Each system that keeps finished jobs in its queue table gets a database of
its own. For each size, ascending, the table is grown to that many finished
rows (inserted with SQL in the shape the system leaves them, then VACUUM
ANALYZE, as autovacuum would do). Then every round adds the pending jobs,
runs ANALYZE and times one worker process draining them. The rounds at one
size rotate the system order like the other measurements.

For conveyor a second case times its store alone, without a worker: the
claim-and-complete loop of benchmarks/claim_table_size.py (PostgresJobRepository
claim and complete, 100 jobs a claim) over the same table. It isolates the
claim statement from the worker's own costs.

PgQueuer is left out: it deletes a job from its queue table when the job
finishes (history goes to pgqueuer_log), so its claim never meets finished
rows.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from benchmarks.context import Context
from benchmarks.measurements.throughput import add_and_drain
from benchmarks.results import Failure, Results, Sample
from benchmarks.systems.base import System

NAME = "claim rate"
STORE_NAME = "claim rate, store loop"
STORE_BATCH = 100
# Rows inserted per statement while growing a table.
GROW_CHUNK = 1_000_000

# Runs once for all rounds; see run_all.
RUNS_ONCE = True


def applies_to(system: System) -> bool:
    return system.keeps_finished_rows


def case_name(size: int) -> str:
    return "empty table" if size == 0 else f"{size:,} finished rows"


async def run_all(
    ctx: Context,
    systems: list[System],
    rounds: int,
    results: Results,
    progress: Callable[[str], None],
    rotate: Callable[[list[str], int], list[str]],
) -> None:
    """Measure every size for every system; samples and failures go to `results`."""
    copies: dict[str, System] = {}
    for system in systems:
        url = await ctx.databases.create(f"{system.name}_claim")
        copy = type(system)(url, system.params)
        await copy.install()
        copies[system.name] = copy

    sizes = ctx.sizes.claim_table_sizes
    grown = dict.fromkeys(copies, 0)
    for size in sizes:
        for name, system in copies.items():
            progress(f"{NAME}: growing {name} to {size:,} finished rows")
            await _grow(system, size - grown[name])
            grown[name] = size

        for round_no in range(1, rounds + 1):
            for name in rotate(list(copies), round_no):
                system = copies[name]
                jobs = system.throughput_jobs(ctx.sizes.claim_jobs)
                label = f"round {round_no}/{rounds} {NAME} {name} {case_name(size)}"
                try:
                    drain = await add_and_drain(ctx, system, jobs, workers=1)
                except Exception as exc:
                    message = f"{type(exc).__name__}: {exc}"
                    results.failures.append(Failure(NAME, name, round_no, message))
                    progress(f"{label} FAILED: {message}")
                    continue
                results.samples.append(
                    Sample(
                        NAME,
                        case_name(size),
                        name,
                        round_no,
                        drain.rate,
                        "jobs/s",
                        True,
                        {"jobs": jobs, "finished_rows": size},
                    )
                )
                progress(f"{label}: {drain.rate:,.0f} jobs/s")
                if system.has_store_loop:
                    await _store_loop(ctx, system, size, round_no, results, progress)


async def _store_loop(
    ctx: Context,
    system: System,
    size: int,
    round_no: int,
    results: Results,
    progress: Callable[[str], None],
) -> None:
    """Time conveyor's repository draining jobs: claim, complete, repeat."""
    from benchmarks import claim_table_size
    from conveyor.adapters.postgres.engine import create_engine
    from conveyor.adapters.postgres.repository import PostgresJobRepository

    jobs = ctx.sizes.claim_jobs
    engine = create_engine(system.dsn, pool_size=2)
    try:
        repository = PostgresJobRepository(engine)
        await system.fill(jobs)
        await system.analyze()
        started = time.perf_counter()
        done = await claim_table_size.drain(repository, STORE_BATCH)
        rate = done / (time.perf_counter() - started)
    finally:
        await engine.dispose()
    results.samples.append(
        Sample(
            STORE_NAME,
            case_name(size),
            system.name,
            round_no,
            rate,
            "jobs/s",
            True,
            {"jobs": done, "finished_rows": size, "claim_batch": STORE_BATCH},
        )
    )
    progress(f"{STORE_NAME} {system.name} {case_name(size)}: {rate:,.0f} jobs/s")


async def _grow(system: System, count: int) -> None:
    connection = await asyncpg.connect(system.dsn)
    try:
        while count > 0:
            chunk = min(GROW_CHUNK, count)
            await system.add_finished(connection, chunk)
            count -= chunk
        # autovacuum may be off on the server; this is what it would do.
        await connection.execute("VACUUM (ANALYZE)")
    finally:
        await connection.close()
