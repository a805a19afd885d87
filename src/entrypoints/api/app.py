"""The Litestar application factory."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig

from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.application.managing import ManageJobs
from conveyor.application.queries import QueryJobs
from conveyor.application.submitting import MAX_BATCH_SIZE, SubmitJobs
from conveyor.entrypoints.api.batching import SubmitBatcher
from conveyor.entrypoints.api.errors import exception_handlers
from conveyor.entrypoints.api.health import health, queues, ready
from conveyor.entrypoints.api.jobs import BatchController, JobsController
from conveyor.entrypoints.api.schemas import RawJsonSchemaPlugin
from conveyor.entrypoints.api.services import ApiServices, StoreProbe, provide_services
from conveyor.entrypoints.builtin_tasks import register_builtins
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.container import Container, resolve_as, shutdown
from conveyor.entrypoints.logging import get_logger
from conveyor.entrypoints.tasks import TaskRegistry

log = get_logger("conveyor.api")

# Room for the fields around a payload of the maximum size in one request.
ENVELOPE_BYTES = 64 * 1024
# Body limit of a batch, enough for 10,000 jobs of 6 KiB each; every payload
# in it is still checked against CONVEYOR_MAX_PAYLOAD_BYTES.
BATCH_BODY_BYTES = 64 * 1024 * 1024

API_VERSION = "0.1.0"

# Store calls that POST /jobs runs at once. Requests that arrive meanwhile
# wait and share the next call. Measured with 32 clients on PostgreSQL, 1 to 4
# calls gave the same rate and 10 calls spent more CPU per job.
JOINED_CALLS = 4


def create_app(container: Container) -> Litestar:
    """Build the API on the container's settings and stores.

    The use cases are resolved when the app starts, and the container's
    resources (the database pool) are shut down when it stops.
    """
    settings: Settings = container.settings()
    single_limit = settings.max_payload_bytes + ENVELOPE_BYTES
    batch_limit = max(BATCH_BODY_BYTES, single_limit)

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.services = await _build_services(container, settings)
        # The objects made at start (modules, routes, OpenAPI models) live as
        # long as the process, so the collector stops scanning them. A batch
        # of 1,000 jobs allocates enough to start full collections, and this
        # cut the API's CPU per batch job by about 15% on PostgreSQL.
        gc.freeze()
        log.info("api_started", store=settings.store)
        try:
            yield
        finally:
            await shutdown(container)
            log.info("api_stopped")

    batch = Router(
        path="/",
        route_handlers=[BatchController],
        request_max_body_size=batch_limit,
    )
    return Litestar(
        route_handlers=[JobsController, batch, health, ready, queues],
        dependencies={"services": Provide(provide_services, sync_to_thread=False)},
        exception_handlers=exception_handlers(),
        request_max_body_size=single_limit,
        plugins=[RawJsonSchemaPlugin()],
        openapi_config=OpenAPIConfig(
            title="conveyor",
            version=API_VERSION,
            description=(
                "Submit, inspect and manage background jobs stored in PostgreSQL. "
                f"Batches hold at most {MAX_BATCH_SIZE} jobs."
            ),
        ),
        lifespan=[lifespan],
        logging_config=None,
    )


async def _build_services(container: Container, settings: Settings) -> ApiServices:
    registry = container.registry()
    submit_jobs = await resolve_as(container.submit_jobs, SubmitJobs)
    return ApiServices(
        submit_jobs=submit_jobs,
        batcher=SubmitBatcher(submit_jobs, min(settings.pool_size, JOINED_CALLS)),
        query_jobs=await resolve_as(container.query_jobs, QueryJobs),
        manage_jobs=await resolve_as(container.manage_jobs, ManageJobs),
        probe_store=await _store_probe(container, settings),
        tasks=_load_tasks(registry, settings),
        max_payload_bytes=settings.max_payload_bytes,
    )


def _load_tasks(registry: TaskRegistry, settings: Settings) -> TaskRegistry | None:
    """Load the task modules; None (accept any task name) when none are configured.

    Workers always have the built-in tasks, so the API accepts them as well.
    """
    if not settings.task_modules:
        return None
    register_builtins(registry)
    registry.load_modules(settings.task_modules)
    return registry


async def _store_probe(container: Container, settings: Settings) -> StoreProbe:
    if settings.store == "memory":
        return _memory_is_ready

    # Reading the database clock is the cheapest statement that goes through
    # the same pool and error translation as every request.
    repository = await resolve_as(container.repository, PostgresJobRepository)

    async def probe() -> None:
        await repository.now()

    return probe


async def _memory_is_ready() -> None:
    return None
