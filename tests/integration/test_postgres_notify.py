"""LISTEN/NOTIFY wake-ups of idle workers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pytest

from conveyor.adapters.postgres.notify import JobWakeups
from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.application.ports import NewJob
from conveyor.domain.job import JobRequest

# Long enough that a missing notification fails the test rather than racing it.
WAKEUP_TIMEOUT = 10.0
# How long a test waits to show that no notification comes.
QUIET_PERIOD = 0.3


@pytest.fixture
async def wakeups(clean_database_url: str) -> AsyncIterator[JobWakeups]:
    wakeups = JobWakeups(clean_database_url, ["default"], min_backoff=0.05)
    await wakeups.start()
    # The first connection wakes waiters once, to cover the time before it.
    assert await wakeups.wait(WAKEUP_TIMEOUT)
    yield wakeups
    await wakeups.close()


def new_job(queue: str = "default", delay: timedelta | None = None) -> NewJob:
    return NewJob(JobRequest("echo", queue=queue, delay=delay), 3, "")


async def listener_pids(url: str) -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND query LIKE 'LISTEN%'"
        )
    finally:
        await connection.close()
    return [row["pid"] for row in rows]


async def test_submission_wakes_listener(
    wakeups: JobWakeups, repository: PostgresJobRepository
) -> None:
    waiting = asyncio.create_task(wakeups.wait(WAKEUP_TIMEOUT))

    await repository.add(new_job())

    assert await waiting


async def test_batch_submission_wakes_listener(
    wakeups: JobWakeups, repository: PostgresJobRepository
) -> None:
    await repository.add_many([new_job(), new_job(), new_job("other")])

    assert await wakeups.wait(WAKEUP_TIMEOUT)


async def test_other_queue_does_not_wake(
    wakeups: JobWakeups, repository: PostgresJobRepository
) -> None:
    await repository.add(new_job("other"))

    assert not await wakeups.wait(QUIET_PERIOD)


async def test_future_job_does_not_wake(
    wakeups: JobWakeups, repository: PostgresJobRepository
) -> None:
    await repository.add(new_job(delay=timedelta(minutes=5)))

    assert not await wakeups.wait(QUIET_PERIOD)


async def test_listener_reconnects_after_connection_loss(
    wakeups: JobWakeups, repository: PostgresJobRepository, clean_database_url: str
) -> None:
    [old_pid] = await listener_pids(clean_database_url)
    killer = await asyncpg.connect(clean_database_url)
    await killer.execute("SELECT pg_terminate_backend($1)", old_pid)
    await killer.close()

    # Reconnecting wakes waiters once, since notifications may have been missed.
    assert await wakeups.wait(WAKEUP_TIMEOUT)
    new_pids = await listener_pids(clean_database_url)
    await repository.add(new_job())

    assert wakeups.connected
    assert len(new_pids) == 1
    assert new_pids != [old_pid]
    assert await wakeups.wait(WAKEUP_TIMEOUT)


async def test_unreachable_server_falls_back_to_timeout() -> None:
    wakeups = JobWakeups(
        "postgresql://postgres@127.0.0.1:1/none", ["default"], min_backoff=0.05
    )

    await wakeups.start(timeout=0.2)
    woken = await wakeups.wait(QUIET_PERIOD)
    await wakeups.close()

    assert not woken
    assert not wakeups.connected
