"""Engine URLs, password masking and the translation of connection errors."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.adapters.postgres.engine import create_engine, mask_url, parse_url
from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.application.ports import JobQuery, NewJob
from conveyor.domain.errors import StoreUnavailable
from conveyor.domain.job import JobId, JobRequest
from conveyor.domain.states import JobState


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:secret@db.example:5433/jobs",
        "postgres://user:secret@db.example:5433/jobs",
        "postgresql+asyncpg://user:secret@db.example:5433/jobs",
    ],
)
def test_url_schemes_map_to_asyncpg(url: str) -> None:
    parsed = parse_url(url)

    assert parsed.drivername == "postgresql+asyncpg"
    assert parsed.host == "db.example"
    assert parsed.port == 5433
    assert parsed.database == "jobs"
    assert parsed.password == "secret"


def test_socket_url_keeps_host_folder() -> None:
    parsed = parse_url("postgresql://postgres:@/postgres?host=/tmp/pg/data")

    assert parsed.host is None
    assert parsed.query["host"] == "/tmp/pg/data"
    assert parsed.database == "postgres"


def test_other_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="mysql"):
        parse_url("mysql://user@host/db")


def test_mask_url_hides_password() -> None:
    masked = mask_url("postgresql+asyncpg://user:secret@db.example/jobs")

    assert "secret" not in masked
    assert masked == "postgresql://user:***@db.example/jobs"


def test_mask_url_hides_password_parameter() -> None:
    masked = mask_url("postgresql://user@db.example/jobs?password=secret")

    assert "secret" not in masked


def test_mask_url_of_garbage_reveals_nothing() -> None:
    assert mask_url("not a url :secret@") == "<invalid database URL>"


async def test_unreachable_server_raises_store_unavailable() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/none", pool_size=1)
    repository = PostgresJobRepository(engine)

    with pytest.raises(StoreUnavailable) as caught:
        await repository.add(NewJob(JobRequest("echo"), 3, ""))
    with pytest.raises(StoreUnavailable):
        await repository.get(JobId(1))
    await engine.dispose()

    assert isinstance(caught.value.__cause__, OSError)


async def _terminate_other_backends(url: str) -> int:
    """End every other backend connected to the database of `url`."""
    killer = await asyncpg.connect(url)
    try:
        terminated = await killer.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await killer.close()
    return int(terminated)


async def _pooled_backend(engine: AsyncEngine) -> asyncpg.Connection:
    """Check out and return the driver connection of a one-connection pool."""
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver_connection = raw.driver_connection
    assert isinstance(driver_connection, asyncpg.Connection)
    return driver_connection


async def test_terminated_backend_recovers_by_next_call(
    clean_database_url: str,
) -> None:
    engine = create_engine(clean_database_url, pool_size=1)
    repository = PostgresJobRepository(engine)
    job = (await repository.add(NewJob(JobRequest("echo"), 3, ""))).job

    assert await _terminate_other_backends(clean_database_url) >= 1
    try:
        first = await repository.get(job.id)
    except StoreUnavailable:
        first = None
    second = await repository.get(job.id)
    await engine.dispose()

    assert first is None or first.id == job.id
    assert second is not None
    assert second.id == job.id


async def test_terminated_backend_loses_no_submission(
    clean_database_url: str,
) -> None:
    engine = create_engine(clean_database_url, pool_size=1)
    repository = PostgresJobRepository(engine)
    await repository.add(NewJob(JobRequest("echo"), 3, ""))
    await _terminate_other_backends(clean_database_url)

    request = JobRequest("echo", idempotency_key="after-terminate")
    try:
        await repository.add(NewJob(request, 3, request.fingerprint()))
    except StoreUnavailable:
        pass  # a caller retries with the same key, as below
    retried = await repository.add(NewJob(request, 3, request.fingerprint()))
    page = await repository.list_jobs(JobQuery())
    await engine.dispose()

    assert retried.job.idempotency_key == "after-terminate"
    assert [job.idempotency_key for job in page.jobs].count("after-terminate") == 1


async def test_closed_pooled_connection_is_replaced(
    clean_database_url: str,
) -> None:
    engine = create_engine(clean_database_url, pool_size=1)
    repository = PostgresJobRepository(engine)
    job = (await repository.add(NewJob(JobRequest("echo"), 3, ""))).job
    pooled = await _pooled_backend(engine)
    closed = asyncio.Event()
    pooled.add_termination_listener(lambda _: closed.set())

    await _terminate_other_backends(clean_database_url)
    async with asyncio.timeout(10):
        await closed.wait()
    stored = await repository.get(job.id)
    await engine.dispose()

    assert stored is not None
    assert stored.id == job.id


async def test_backend_terminated_mid_statement_raises_unavailable(
    clean_database_url: str,
) -> None:
    engine = create_engine(clean_database_url, pool_size=1)
    repository = PostgresJobRepository(engine)
    job = (await repository.add(NewJob(JobRequest("echo"), 3, ""))).job
    locker = await asyncpg.connect(clean_database_url)
    killer = await asyncpg.connect(clean_database_url)
    locking = locker.transaction()
    await locking.start()
    await locker.execute("SELECT 1 FROM jobs WHERE id = $1 FOR UPDATE", job.id)

    # The cancel waits for the row lock until its backend is terminated.
    cancel = asyncio.create_task(
        repository.set_state(job.id, JobState.PENDING, JobState.CANCELLED)
    )
    blocked_pid = None
    for _ in range(200):
        blocked_pid = await killer.fetchval(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'conveyor' AND wait_event_type = 'Lock'"
        )
        if blocked_pid is not None:
            break
        await asyncio.sleep(0.05)
    assert blocked_pid is not None
    await killer.execute("SELECT pg_terminate_backend($1)", blocked_pid)

    with pytest.raises(StoreUnavailable):
        await cancel
    await locking.rollback()
    await locker.close()
    await killer.close()
    cancelled = await repository.set_state(job.id, JobState.PENDING, JobState.CANCELLED)
    await engine.dispose()

    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED


def test_mask_url_keeps_empty_password_empty() -> None:
    masked = mask_url("postgresql://postgres:@/postgres?host=/tmp/pgdata")

    assert "***" not in masked
    assert masked.startswith("postgresql://postgres@/postgres")


async def _other_backends(url: str) -> int:
    """Count the backends connected to the database of `url`, besides this check."""
    checker = await asyncpg.connect(url)
    try:
        for _ in range(50):
            count = await checker.fetchval(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if count == 0:
                break
            await asyncio.sleep(0.02)
    finally:
        await checker.close()
    return int(count)


async def test_pool_gets_connection_after_one_pass(
    clean_database_url: str,
) -> None:
    engine = create_engine(clean_database_url, pool_size=1)
    repository = PostgresJobRepository(engine)
    await repository.add(NewJob(JobRequest("echo"), 3, None))
    await asyncio.sleep(0)

    try:
        # With the only connection still held by the store, this would wait
        # for the pool's timeout.
        async with asyncio.timeout(5), engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")
    finally:
        await engine.dispose()


async def test_dispose_closes_idle_connection(
    clean_database_url: str,
) -> None:
    engine = create_engine(clean_database_url, pool_size=1)
    repository = PostgresJobRepository(engine)
    await repository.add(NewJob(JobRequest("echo"), 3, None))
    # No pass of the event loop in between: the connection is still idle in
    # the store, outside the pool that dispose closes.
    await engine.dispose()

    assert await _other_backends(clean_database_url) == 0
    # The engine opens a new pool after dispose, and the store uses it.
    assert await repository.get(JobId(1)) is not None
    await engine.dispose()
