"""The dependency-injector container that wires settings, stores and use cases.

Nothing here connects or starts anything at import time. The engine is an
async Resource, so with the PostgreSQL store every provider that depends on
it returns an awaitable: resolve providers with `resolve()` and close the
pool with `await container.shutdown_resources()`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any, TypeVar

from dependency_injector import containers, providers
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.adapters.clock import SystemClock, SystemRandom, UuidTokens
from conveyor.adapters.memory import InMemoryJobRepository
from conveyor.adapters.postgres.engine import create_engine
from conveyor.adapters.postgres.notify import JobWakeups
from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.application.executing import ExecuteJobs, PolicyLookup
from conveyor.application.managing import ManageJobs
from conveyor.application.queries import QueryJobs
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.retry import RetryPolicy
from conveyor.entrypoints.config import ConfigError, Settings
from conveyor.entrypoints.tasks import TaskRegistry, default_registry

T = TypeVar("T")


async def _engine_resource(url: str, pool_size: int) -> AsyncIterator[AsyncEngine]:
    if not url:
        raise ConfigError(
            "CONVEYOR_DATABASE_URL is not set; set it to a PostgreSQL URL, "
            "or run `conveyor dev` to start the embedded PostgreSQL"
        )
    engine = create_engine(url, pool_size)
    try:
        yield engine
    finally:
        await engine.dispose()


def _default_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        base_delay=settings.retry_base_seconds,
        max_delay=settings.retry_max_seconds,
    )


def _policy_lookup(registry: TaskRegistry, default: RetryPolicy) -> PolicyLookup:
    def policy_for(task: str) -> RetryPolicy:
        return registry.retry_policy(task, default)

    return policy_for


def _lease_duration(settings: Settings) -> timedelta:
    return timedelta(seconds=settings.lease_seconds)


class Container(containers.DeclarativeContainer):
    """Providers for the API, the worker and the CLI.

    Override `settings` (for example with providers.Object(Settings(...))) to
    run without reading the environment.
    """

    settings = providers.Singleton(Settings.from_env)
    registry = providers.Object(default_registry)

    clock = providers.Singleton(SystemClock)
    tokens = providers.Singleton(UuidTokens)
    random = providers.Singleton(SystemRandom)

    engine = providers.Resource(
        _engine_resource,
        url=settings.provided.database_url,
        pool_size=settings.provided.pool_size,
    )

    repository = providers.Selector(
        settings.provided.store,
        memory=providers.Singleton(InMemoryJobRepository, clock),
        postgres=providers.Singleton(PostgresJobRepository, engine),
    )

    # A Factory: each worker listens for its own queues, which it may pass
    # as `container.wakeups(queues=...)`; the memory store has no wake-ups.
    wakeups = providers.Selector(
        settings.provided.store,
        memory=providers.Object(None),
        postgres=providers.Factory(
            JobWakeups,
            settings.provided.database_url,
            queues=settings.provided.queues,
        ),
    )

    submit_jobs = providers.Singleton(
        SubmitJobs,
        repository,
        default_max_attempts=settings.provided.default_max_attempts,
    )
    execute_jobs = providers.Singleton(
        ExecuteJobs,
        repository,
        tokens,
        random,
        policy_for=providers.Callable(
            _policy_lookup, registry, providers.Callable(_default_policy, settings)
        ),
        lease_duration=providers.Callable(_lease_duration, settings),
    )
    manage_jobs = providers.Singleton(ManageJobs, repository)
    query_jobs = providers.Singleton(QueryJobs, repository)


def build_container(settings: Settings | None = None) -> Container:
    """Create a container, reading settings from the environment unless given."""
    container = Container()
    if settings is not None:
        container.settings.override(providers.Object(settings))
    return container


async def resolve(provider: providers.Provider[Any]) -> Any:
    """Return what the provider gives, awaiting it when it depends on the engine."""
    value = provider()
    if inspect.isawaitable(value):
        return await value
    return value


async def resolve_as(provider: providers.Provider[Any], kind: type[T]) -> T:
    """Resolve a provider and check the type of what it gives."""
    value = await resolve(provider)
    if not isinstance(value, kind):
        raise TypeError(
            f"{provider!r} gave {type(value).__name__}, not {kind.__name__}"
        )
    return value


async def shutdown(container: Container) -> None:
    """Close the container's resources (the database pool) if any were opened."""
    result = container.shutdown_resources()
    if result is not None:
        await result
