"""Liveness, readiness and per-queue counts."""

from __future__ import annotations

from litestar import get

from conveyor.entrypoints.api.errors import error_responses
from conveyor.entrypoints.api.schemas import QueuesOut, StatusOut, queues_out
from conveyor.entrypoints.api.services import Services


@get("/health", tags=["operations"], summary="Liveness: the process serves HTTP")
async def health() -> StatusOut:
    # Deliberately touches nothing else: a database outage must not make an
    # orchestrator restart healthy API processes.
    return StatusOut(status="ok")


@get(
    "/ready",
    tags=["operations"],
    summary="Readiness: the job store answers",
    description="Returns 503 while the database cannot be reached.",
    responses=error_responses(503),
)
async def ready(services: Services) -> StatusOut:
    await services.probe_store()
    return StatusOut(status="ready")


@get(
    "/queues",
    tags=["jobs"],
    responses=error_responses(503),
    summary="Count the jobs of each queue by state",
)
async def queues(services: Services) -> QueuesOut:
    return queues_out(await services.query_jobs.counts())
