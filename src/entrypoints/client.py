"""Submit and inspect jobs from Python.

Two ways in:

- `ConveyorClient` talks to a running API over HTTP:

      with ConveyorClient("http://127.0.0.1:3000") as client:
          job = client.submit("echo", {"hello": "world"}).job
          client.submit_many([{"task": "echo", "payload": i} for i in range(1000)])

- `open_queue()` submits straight to the job store from inside your own
  process, with no API in between (it reads CONVEYOR_* settings):

      async with open_queue() as queue:
          await queue.enqueue("echo", {"hello": "world"})
          await queue.enqueue_many([JobRequest("echo", i) for i in range(1000)])
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import httpx

from conveyor.application.ports import Submission
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.job import JobRequest, JsonValue
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.container import build_container, resolve_as, shutdown

DEFAULT_API_URL = "http://127.0.0.1:3000"

Json = dict[str, Any]


class ApiError(Exception):
    """The API returned an error status; `detail` describes what was wrong."""

    def __init__(
        self,
        status_code: int,
        detail: str,
        field: str | None = None,
        job_id: int | None = None,
    ) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail
        self.field = field
        self.job_id = job_id


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submitted job; `created` is False when the idempotency key was seen before."""

    job: Json
    created: bool


@dataclass(frozen=True, slots=True)
class BatchItem:
    job_id: int
    created: bool


@dataclass(frozen=True, slots=True)
class JobPage:
    items: list[Json]
    next_cursor: str | None


class ConveyorClient:
    """A blocking HTTP client for the conveyor API; one connection pool per client."""

    def __init__(
        self,
        base_url: str = DEFAULT_API_URL,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"), timeout=timeout, transport=transport
        )

    def submit(
        self,
        task: str,
        payload: JsonValue = None,
        *,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | None = None,
        delay: float | timedelta | None = None,
        max_attempts: int | None = None,
        idempotency_key: str | None = None,
    ) -> Submitted:
        body = job_body(
            task,
            payload,
            queue=queue,
            priority=priority,
            run_at=run_at,
            delay=delay,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
        response = self._request("POST", "/jobs", json=body)
        return Submitted(job=response.json(), created=response.status_code == 201)

    def submit_many(self, jobs: Iterable[Mapping[str, Any]]) -> list[BatchItem]:
        """Submit up to 10,000 jobs in one request; build each with job_body()."""
        response = self._request("POST", "/jobs/batch", json={"jobs": list(jobs)})
        return [
            BatchItem(job_id=item["job_id"], created=item["status"] == 201)
            for item in response.json()["jobs"]
        ]

    def get(self, job_id: int) -> Json:
        result: Json = self._request("GET", f"/jobs/{job_id}").json()
        return result

    def list_jobs(
        self,
        *,
        states: Sequence[str] = (),
        queues: Sequence[str] = (),
        tasks: Sequence[str] = (),
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        params: list[tuple[str, str | int]] = [("limit", limit)]
        params += [("state", state) for state in states]
        params += [("queue", queue) for queue in queues]
        params += [("task", task) for task in tasks]
        if cursor is not None:
            params.append(("cursor", cursor))
        body = self._request("GET", "/jobs", params=params).json()
        return JobPage(items=body["items"], next_cursor=body["next_cursor"])

    def cancel(self, job_id: int) -> Json:
        result: Json = self._request("POST", f"/jobs/{job_id}/cancel").json()
        return result

    def requeue(self, job_id: int) -> Json:
        result: Json = self._request("POST", f"/jobs/{job_id}/requeue").json()
        return result

    def queues(self) -> list[Json]:
        result: list[Json] = self._request("GET", "/queues").json()["queues"]
        return result

    def health(self) -> Json:
        result: Json = self._request("GET", "/health").json()
        return result

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConveyorClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            raise _api_error(response)
        return response


def job_body(
    task: str,
    payload: JsonValue = None,
    *,
    queue: str | None = None,
    priority: int | None = None,
    run_at: datetime | None = None,
    delay: float | timedelta | None = None,
    max_attempts: int | None = None,
    idempotency_key: str | None = None,
) -> Json:
    """Build the JSON body of one job, leaving out what the server defaults."""
    body: Json = {"task": task, "payload": payload}
    if queue is not None:
        body["queue"] = queue
    if priority is not None:
        body["priority"] = priority
    if run_at is not None:
        body["run_at"] = run_at.isoformat()
    if delay is not None:
        body["delay"] = delay.total_seconds() if isinstance(delay, timedelta) else delay
    if max_attempts is not None:
        body["max_attempts"] = max_attempts
    if idempotency_key is not None:
        body["idempotency_key"] = idempotency_key
    return body


def _api_error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict) or "detail" not in body:
        return ApiError(response.status_code, response.text or response.reason_phrase)
    return ApiError(
        response.status_code, str(body["detail"]), body.get("field"), body.get("job_id")
    )


class JobQueue:
    """Submit jobs in-process through the SubmitJobs use case."""

    def __init__(self, submit_jobs: SubmitJobs) -> None:
        self._submit_jobs = submit_jobs

    async def enqueue(
        self, task: str, payload: JsonValue = None, **fields: Any
    ) -> Submission:
        """Store one job; `fields` are JobRequest's (queue, priority, delay, ...)."""
        return await self._submit_jobs.submit(JobRequest(task, payload, **fields))

    async def enqueue_many(self, requests: Sequence[JobRequest]) -> list[Submission]:
        """Store up to 10,000 jobs in one round trip; keys act per item."""
        return await self._submit_jobs.submit_many(requests)


@asynccontextmanager
async def open_queue(settings: Settings | None = None) -> AsyncIterator[JobQueue]:
    """Open the job store named by the settings (CONVEYOR_* by default)."""
    container = build_container(settings)
    try:
        yield JobQueue(await resolve_as(container.submit_jobs, SubmitJobs))
    finally:
        await shutdown(container)
