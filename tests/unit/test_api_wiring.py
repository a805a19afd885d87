"""The container picks the store from settings and opens no pool for memory."""

from __future__ import annotations

from dataclasses import replace

from conveyor.adapters.memory import InMemoryJobRepository
from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.application.executing import ExecuteJobs
from conveyor.application.submitting import SubmitJobs
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.container import (
    Container,
    build_container,
    resolve,
    resolve_as,
    shutdown,
)

MEMORY = Settings(store="memory")


async def test_memory_store_opens_no_engine() -> None:
    container = build_container(MEMORY)

    repository = await resolve(container.repository)
    await resolve_as(container.submit_jobs, SubmitJobs)

    assert isinstance(repository, InMemoryJobRepository)
    assert not container.engine.initialized
    assert await resolve(container.wakeups) is None


async def test_use_cases_share_one_repository() -> None:
    container = build_container(MEMORY)

    first = await resolve(container.repository)
    second = await resolve(container.repository)

    assert first is second


async def test_postgres_store_builds_without_connecting() -> None:
    # Port 9 (discard) on loopback: nothing may connect before the first query.
    settings = Settings(database_url="postgresql://u@127.0.0.1:9/db")
    container = build_container(settings)

    repository = await resolve(container.repository)
    await shutdown(container)

    assert isinstance(repository, PostgresJobRepository)


async def test_execute_jobs_takes_lease_from_settings() -> None:
    container = build_container(replace(MEMORY, lease_seconds=12.5))

    execute = await resolve_as(container.execute_jobs, ExecuteJobs)

    assert execute.lease_duration.total_seconds() == 12.5


def test_container_class_has_every_provider() -> None:
    names = set(Container.providers)

    assert {
        "settings",
        "registry",
        "clock",
        "tokens",
        "random",
        "engine",
        "repository",
        "submit_jobs",
        "execute_jobs",
        "manage_jobs",
        "query_jobs",
        "wakeups",
    } <= names
