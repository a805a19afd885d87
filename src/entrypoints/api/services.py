"""Services for the route handlers, resolved from the container when the app starts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from litestar.datastructures import State
from litestar.di import NamedDependency

from conveyor.application.managing import ManageJobs
from conveyor.application.queries import QueryJobs
from conveyor.application.submitting import SubmitJobs
from conveyor.entrypoints.api.batching import SubmitBatcher
from conveyor.entrypoints.tasks import TaskRegistry

StoreProbe = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ApiServices:
    """Use cases and limits for the handlers.

    `tasks` is None when the API loaded no task modules: it cannot tell a
    worker's task from a typo then, so it accepts any task name.
    """

    submit_jobs: SubmitJobs
    # POST /jobs submits through it, so that concurrent requests share a call.
    batcher: SubmitBatcher
    query_jobs: QueryJobs
    manage_jobs: ManageJobs
    probe_store: StoreProbe
    tasks: TaskRegistry | None
    max_payload_bytes: int


def provide_services(state: State) -> ApiServices:
    services = state.get("services")
    if not isinstance(services, ApiServices):
        raise RuntimeError("the API services are not ready; the app has not started")
    return services


# Handlers receive the services through a dependency named "services".
Services = NamedDependency[ApiServices]
