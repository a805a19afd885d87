"""Claim rate on an empty jobs table versus one full of finished jobs.

    python -m benchmarks.claim_table_size [--database-url postgresql://...] \
        [--finished-rows 1000000] [--jobs 20000] [--batch 500] [--rounds 5]

The script makes two scratch databases on the server that --database-url
points at (named bench_claim_empty_<hex> and bench_claim_full_<hex>, dropped
at the end): one stays empty, the other first gets --finished-rows COMPLETED
jobs. Each round runs once on each database, in alternating order, so both
sides of a ratio are measured seconds apart under the same load from other
work on the machine.

A measurement submits --jobs jobs, then one store drains them: claim a batch,
complete it, repeat. The rate is jobs per second of draining. It is printed
with the CPU time per job of this process and, for a server on this machine,
of the server processes serving that database: these depend far less on
other load than the rate does. Before each measurement the script vacuums
the tables and runs CHECKPOINT, so that writing back the bulk insert does not
land inside a measured drain, and the empty database is emptied again. The
claim index contains only claimable jobs, so finished rows should barely
slow the claim.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from benchmarks.database import DEFAULT_SERVER_URL, BenchDatabases
from conveyor.adapters.postgres.engine import create_engine, mask_url
from conveyor.adapters.postgres.migrate import upgrade
from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.adapters.postgres.tables import jobs
from conveyor.application.ports import ClaimRequest, Completion, Lease, NewJob
from conveyor.domain.job import JobRequest, LeaseToken, WorkerId
from conveyor.domain.states import JobState

WORKER = WorkerId("benchmark")
LEASE = timedelta(seconds=60)
SUBMIT_BATCH = 5000


async def submit(repository: PostgresJobRepository, count: int) -> None:
    for start in range(0, count, SUBMIT_BATCH):
        size = min(SUBMIT_BATCH, count - start)
        await repository.add_many(
            [NewJob(JobRequest("noop", {"n": start + i}), 3, "") for i in range(size)]
        )


async def drain(repository: PostgresJobRepository, batch: int) -> int:
    """Claim and complete batches until no job is due; return the jobs done."""
    done = 0
    while True:
        claimed = await repository.claim(
            ClaimRequest(WORKER, ("default",), batch, LeaseToken(uuid.uuid4()), LEASE)
        )
        if not claimed:
            return done
        completions = [
            Completion(Lease(job.id, job.lease_token))
            for job in claimed
            if job.lease_token is not None
        ]
        done += len(await repository.complete(completions))


async def settle(engine: AsyncEngine) -> None:
    """Vacuum, analyse and, where the role may, write back dirty pages.

    This keeps maintenance work left over from the previous round or from
    the bulk insert out of the next measured round.
    """
    async with engine.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        await autocommit.execute(sa.text("VACUUM (FREEZE, ANALYZE) jobs"))
        await autocommit.execute(sa.text("VACUUM (FREEZE, ANALYZE) job_attempts"))
        try:
            await autocommit.execute(sa.text("CHECKPOINT"))
        except sa.exc.DBAPIError as exc:
            # CHECKPOINT needs superuser or pg_checkpoint (PostgreSQL 15+).
            print(f"CHECKPOINT skipped: {exc.orig}")


@dataclass(frozen=True)
class Round:
    """One drain: its rate, and the CPU time spent per job here and in the server.

    `server_cpu_per_job` is None when the server's processes are not readable
    from here, as on another host.
    """

    rate: float
    cpu_per_job: float
    server_cpu_per_job: float | None


_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


async def server_cpu_seconds(engine: AsyncEngine) -> float | None:
    """Return the CPU time used so far by the server processes of this database.

    It is read from /proc, so it works only for a server on this machine.
    """
    async with engine.connect() as connection:
        pids = (
            await connection.scalars(
                sa.text(
                    "SELECT pid FROM pg_stat_activity"
                    " WHERE datname = current_database()"
                )
            )
        ).all()
    return await asyncio.to_thread(_processes_cpu_seconds, pids)


def _processes_cpu_seconds(pids: Sequence[int]) -> float | None:
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # After the command name in parentheses, utime and stime are the
        # 12th and 13th fields (fields 14 and 15 of the whole line).
        fields = stat.rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / _TICKS_PER_SECOND


async def measure(
    engine: AsyncEngine,
    repository: PostgresJobRepository,
    jobs_per_round: int,
    batch: int,
    rounds: int,
) -> list[Round]:
    """Drain `rounds` times and return the figures of each round."""
    results = []
    for _ in range(rounds):
        await submit(repository, jobs_per_round)
        await settle(engine)
        server_started = await server_cpu_seconds(engine)
        started = time.perf_counter()
        cpu_started = time.process_time()
        done = await drain(repository, batch)
        cpu = time.process_time() - cpu_started
        elapsed = time.perf_counter() - started
        server_ended = await server_cpu_seconds(engine)
        if done != jobs_per_round:
            raise RuntimeError(f"drained {done} jobs, expected {jobs_per_round}")
        server_cpu = None
        if server_started is not None and server_ended is not None:
            server_cpu = (server_ended - server_started) / done
        results.append(Round(done / elapsed, cpu / done, server_cpu))
    return results


def describe(label: str, results: list[Round]) -> str:
    rates = [result.rate for result in results]
    cpu = statistics.median(result.cpu_per_job for result in results)
    server_cpus = [result.server_cpu_per_job for result in results]
    known = [value for value in server_cpus if value is not None]
    server = "n/a"
    if len(known) == len(server_cpus):
        server = f"{statistics.median(known) * 1e6:5.1f} µs/job"
    rounds = ", ".join(f"{rate:,.0f}" for rate in rates)
    return (
        f"{label:<26} best {max(rates):8,.0f} jobs/s, "
        f"median {statistics.median(rates):8,.0f} jobs/s, "
        f"CPU here {cpu * 1e6:5.1f} µs/job, in the server {server} "
        f"(rounds: {rounds})"
    )


async def insert_finished(engine: AsyncEngine, count: int) -> None:
    """Insert `count` COMPLETED jobs with one INSERT ... SELECT generate_series."""
    number = sa.func.generate_series(1, count).table_valued("n").render_derived()
    now = sa.func.now()
    rows = sa.select(
        sa.literal("noop"),
        sa.literal("default"),
        sa.func.jsonb_build_object(sa.literal("n"), number.c.n),
        sa.literal(JobState.COMPLETED.value),
        now,
        sa.literal(1),
        sa.literal(3),
        sa.literal(WORKER),
        now,
        now,
    )
    columns = [
        "task",
        "queue",
        "payload",
        "state",
        "run_at",
        "attempt",
        "max_attempts",
        "worker_id",
        "started_at",
        "finished_at",
    ]
    async with engine.begin() as connection:
        await connection.execute(sa.insert(jobs).from_select(columns, rows))


async def count_jobs(engine: AsyncEngine) -> int:
    async with engine.connect() as connection:
        total = await connection.scalar(sa.select(sa.func.count()).select_from(jobs))
    return int(total or 0)


async def empty_tables(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(sa.text("TRUNCATE jobs, job_attempts"))


@dataclass
class Side:
    """One of the two databases, with the rounds measured on it."""

    label: str
    engine: AsyncEngine
    repository: PostgresJobRepository
    rounds: list[Round]


async def measure_round(side: Side, jobs_per_round: int, batch: int) -> Round:
    if side.label == "empty":
        await empty_tables(side.engine)
    [result] = await measure(side.engine, side.repository, jobs_per_round, batch, 1)
    side.rounds.append(result)
    return result


async def run(arguments: argparse.Namespace) -> None:
    databases = BenchDatabases(arguments.database_url)
    sides: list[Side] = []
    try:
        for label in ("empty", "full"):
            url = await databases.create(f"claim_{label}")
            await upgrade(url)
            engine = create_engine(url, pool_size=2)
            sides.append(Side(label, engine, PostgresJobRepository(engine), []))
        empty, full = sides
        print(f"server: {mask_url(arguments.database_url)}")
        print(
            f"{arguments.rounds} rounds of {arguments.jobs} jobs on each database, "
            f"claim batch {arguments.batch}"
        )

        started = time.perf_counter()
        await insert_finished(full.engine, arguments.finished_rows)
        print(
            f"inserted {arguments.finished_rows:,} finished jobs "
            f"in {time.perf_counter() - started:.1f} s"
        )

        ratios = []
        for round_no in range(arguments.rounds):
            order = (empty, full) if round_no % 2 == 0 else (full, empty)
            for side in order:
                await measure_round(side, arguments.jobs, arguments.batch)
            ratios.append(full.rounds[-1].rate / empty.rounds[-1].rate)

        print(describe("empty table:", empty.rounds))
        print(
            describe(f"{await count_jobs(full.engine):,} rows in table:", full.rounds)
        )
        print(
            f"ratio full / empty within each round: median "
            f"{statistics.median(ratios):.2f} (min {min(ratios):.2f}, "
            f"max {max(ratios):.2f}; rounds: "
            + ", ".join(f"{ratio:.2f}" for ratio in ratios)
            + ")"
        )
        empty_cpu = statistics.median(r.server_cpu_per_job or 0 for r in empty.rounds)
        full_cpu = statistics.median(r.server_cpu_per_job or 0 for r in full.rounds)
        if empty_cpu and full_cpu:
            print(f"server CPU per job, full / empty: {full_cpu / empty_cpu:.2f}")
    finally:
        for side in sides:
            await side.engine.dispose()
        await databases.drop_all()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER_URL),
        help="a database on the server, to connect to for CREATE DATABASE "
        f"(default {DEFAULT_SERVER_URL}, or BENCH_DATABASE_URL)",
    )
    parser.add_argument(
        "--finished-rows",
        type=int,
        default=1_000_000,
        help="finished jobs inserted before the second measurement (default 1000000)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=20_000,
        help="jobs drained per round (default 20000)",
    )
    parser.add_argument(
        "--batch", type=int, default=500, help="jobs per claim (default 500)"
    )
    parser.add_argument(
        "--rounds", type=int, default=5, help="rounds per measurement (default 5)"
    )
    asyncio.run(run(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
