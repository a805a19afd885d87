"""Concurrent claimers, submitters and recoverers, each on its own connection."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.adapters.clock import FixedRandom, UuidTokens
from conveyor.adapters.postgres import statements
from conveyor.adapters.postgres.engine import create_engine
from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.adapters.postgres.tables import job_attempts, jobs
from conveyor.application.executing import ExecuteJobs, lease_of
from conveyor.application.ports import Completion, Failure, JobQuery, NewJob
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.job import AttemptOutcome, ErrorInfo, Job, JobRequest, WorkerId
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.states import JobState

LEASE = timedelta(seconds=30)
# No backoff, so that a recovered job is due again at once.
NO_BACKOFF = RetryPolicy(base_delay=0, factor=1, max_delay=0, jitter=0)

EngineFactory = Callable[[], AsyncEngine]


@pytest.fixture
async def new_engine(clean_database_url: str) -> AsyncIterator[EngineFactory]:
    """Make engines of one connection each; all are disposed after the test."""
    engines: list[AsyncEngine] = []

    def make() -> AsyncEngine:
        engine = create_engine(clean_database_url, pool_size=1)
        engines.append(engine)
        return engine

    yield make
    await asyncio.gather(*(engine.dispose() for engine in engines))


def executor(
    repository: PostgresJobRepository, lease: timedelta = LEASE
) -> ExecuteJobs:
    return ExecuteJobs(
        repository, UuidTokens(), FixedRandom(0.0), lambda task: NO_BACKOFF, lease
    )


async def submit_jobs(repository: PostgresJobRepository, count: int) -> None:
    for start in range(0, count, 1000):
        await repository.add_many(
            [
                NewJob(JobRequest("echo", i), 3, "")
                for i in range(start, min(count, start + 1000))
            ]
        )


async def fetch_all(engine: AsyncEngine, query: sa.Select[Any]) -> list[Any]:
    async with engine.connect() as connection:
        return list((await connection.execute(query)).all())


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Check `condition` every 50 ms; fail the test if it is still false after 10 s."""
    for _ in range(200):
        if await condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail("condition still false after 10 s")


async def test_concurrent_claimers_claim_each_job_once(
    new_engine: EngineFactory,
) -> None:
    total = 5000
    await submit_jobs(PostgresJobRepository(new_engine()), total)
    claims: list[Job] = []
    accepted: list[int] = []

    async def claimer(number: int) -> None:
        execute = executor(PostgresJobRepository(new_engine()))
        worker = WorkerId(f"worker-{number}")
        while batch := await execute.claim(worker, ["default"], 25):
            claims.extend(batch)
            done = await execute.complete(
                [Completion(lease_of(job), job.payload) for job in batch]
            )
            accepted.extend(done)

    await asyncio.gather(*(claimer(n) for n in range(8)))

    claimed_ids = [job.id for job in claims]
    assert len(claimed_ids) == total
    assert len(set(claimed_ids)) == total
    assert len(set(accepted)) == total
    assert len({job.worker_id for job in claims}) > 1
    engine = new_engine()
    states = await fetch_all(
        engine, sa.select(jobs.c.state, sa.func.count()).group_by(jobs.c.state)
    )
    assert states == [(JobState.COMPLETED.value, total)]
    # A completed attempt lives in its jobs row and gets no attempt row.
    attempt_rows = await fetch_all(
        engine, sa.select(sa.func.count()).select_from(job_attempts)
    )
    assert attempt_rows == [(0,)]
    page = await PostgresJobRepository(engine).list_jobs(JobQuery(limit=total))
    attempts = Counter(
        (attempt.outcome, attempt.attempt, attempt.worker_id == job.worker_id)
        for job in page.jobs
        for attempt in job.attempts
    )
    assert attempts == {(AttemptOutcome.COMPLETED, 1, True): total}


async def test_concurrent_repeats_on_own_connections_store_one_job(
    new_engine: EngineFactory,
) -> None:
    request = JobRequest("echo", {"order": 7}, idempotency_key="order-7")
    # At most 40 connections are open at once, so that the test fits in the
    # default max_connections of 100 on a server that other clients share.
    open_connections = asyncio.Semaphore(40)

    async def submit_once() -> tuple[int, bool]:
        async with open_connections:
            engine = new_engine()
            submission = await SubmitJobs(PostgresJobRepository(engine), 3).submit(
                request
            )
            await engine.dispose()
        return submission.job.id, submission.created

    results = await asyncio.gather(*(submit_once() for _ in range(100)))

    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    rows = await fetch_all(new_engine(), sa.select(sa.func.count()).select_from(jobs))
    assert rows == [(1,)]


async def test_expired_lease_is_recovered_by_other_claimer(
    new_engine: EngineFactory,
) -> None:
    first_store = PostgresJobRepository(new_engine())
    second_store = PostgresJobRepository(new_engine())
    first = executor(first_store, lease=timedelta(milliseconds=300))
    second = executor(second_store)
    await first_store.add(NewJob(JobRequest("echo"), 3, ""))
    [held] = await first.claim(WorkerId("worker-1"), ["default"], 1)
    recovered: list[Any] = []

    async def lease_expired_and_recovered() -> bool:
        recovered.extend(await second.recover_expired())
        return bool(recovered)

    await wait_until(lease_expired_and_recovered)
    [taken_over] = await second.claim(WorkerId("worker-2"), ["default"], 1)
    late = await first.complete_one(held, "late")
    on_time = await second.complete_one(taken_over, "on time")

    assert recovered[0].job.id == held.id
    assert taken_over.id == held.id
    assert taken_over.attempt == 2
    assert not late
    assert on_time
    rows = await fetch_all(
        new_engine(),
        sa.select(
            job_attempts.c.attempt, job_attempts.c.worker_id, job_attempts.c.outcome
        ).order_by(job_attempts.c.id),
    )
    assert rows == [(1, "worker-1", AttemptOutcome.LEASE_EXPIRED.value)]
    job = await second_store.get(held.id)
    assert job is not None
    assert [(a.attempt, a.worker_id, a.outcome) for a in job.attempts] == [
        (1, "worker-1", AttemptOutcome.LEASE_EXPIRED),
        (2, "worker-2", AttemptOutcome.COMPLETED),
    ]
    assert job.state is JobState.COMPLETED
    assert job.result == "on time"


async def test_concurrent_expiry_applies_once(new_engine: EngineFactory) -> None:
    owner = PostgresJobRepository(new_engine())
    await submit_jobs(owner, 20)
    await executor(owner).claim(WorkerId("worker-1"), ["default"], 20)
    # Recoverers whose clock runs past the 30 s lease see every lease expired.
    recoverers = [
        PostgresJobRepository(new_engine(), time_shift=LEASE + timedelta(seconds=1))
        for _ in range(4)
    ]
    found = [await recoverer.find_expired(100) for recoverer in recoverers]
    error = ErrorInfo("LeaseExpired", "worker-1 stopped renewing its lease")
    failures = [
        [
            Failure(lease_of(job), JobState.FAILED, timedelta(0), error)
            for job in expired
        ]
        for expired in found
    ]

    applied = await asyncio.gather(
        *(
            recoverer.expire(batch)
            for recoverer, batch in zip(recoverers, failures, strict=True)
        )
    )

    assert all(len(expired) == 20 for expired in found)
    assert sum(len(ids) for ids in applied) == 20
    assert len(set().union(*applied)) == 20
    rows = await fetch_all(
        new_engine(),
        sa.select(job_attempts.c.outcome, sa.func.count()).group_by(
            job_attempts.c.outcome
        ),
    )
    assert rows == [(AttemptOutcome.LEASE_EXPIRED.value, 20)]


@pytest.mark.parametrize("plan_mode", ["force_custom_plan", "force_generic_plan"])
async def test_claim_query_uses_claim_index(
    new_engine: EngineFactory, clean_database_url: str, plan_mode: str
) -> None:
    engine = new_engine()
    async with engine.begin() as connection:
        await connection.execute(_finished_rows(20_000))
        await connection.execute(sa.text("ANALYZE jobs"))
    await submit_jobs(PostgresJobRepository(engine), 50)
    arguments = statements.CLAIM.arguments(
        {
            "time_shift": timedelta(0),
            "queues": ["default"],
            "limit": 10,
            "worker_id": "worker-1",
            "lease_token": uuid.uuid4(),
            "lease_duration": LEASE,
        }
    )

    # The store prepares the claim once per connection, and PostgreSQL may
    # switch a prepared statement to a generic plan, so both plans count.
    connection = await asyncpg.connect(clean_database_url)
    try:
        await connection.execute(
            "SELECT set_config('plan_cache_mode', $1, false)", plan_mode
        )
        plan = await connection.fetch("EXPLAIN " + statements.CLAIM.sql, *arguments)
    finally:
        await connection.close()
    plan_text = "\n".join(row[0] for row in plan)

    assert "jobs_claim_idx" in plan_text, plan_text


def _finished_rows(count: int) -> sa.Insert:
    """Insert `count` COMPLETED jobs with one statement."""
    number = sa.func.generate_series(1, count).table_valued("n").render_derived()
    return sa.insert(jobs).from_select(
        [
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
        ],
        sa.select(
            sa.literal("echo"),
            sa.literal("default"),
            sa.func.to_jsonb(number.c.n),
            sa.literal(JobState.COMPLETED.value),
            sa.func.now(),
            sa.literal(1),
            sa.literal(3),
            sa.literal("worker-0"),
            sa.func.now(),
            sa.func.now(),
        ),
    )
