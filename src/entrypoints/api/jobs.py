"""Routes under /jobs: submit, submit a batch, get, list, cancel, requeue."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Sequence
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.exceptions import ValidationException
from litestar.openapi import ResponseSpec
from litestar.params import (
    FromPath,
    FromQuery,
    HeaderParameter,
    JSONBody,
    QueryParameter,
)

from conveyor.application.ports import JobQuery
from conveyor.domain.errors import InvalidJobRequest
from conveyor.domain.job import JobId
from conveyor.domain.states import JobState
from conveyor.entrypoints.api.errors import PayloadTooLarge, error_responses
from conveyor.entrypoints.api.schemas import (
    BatchOut,
    JobOut,
    JobPageOut,
    StrictJsonDTO,
    SubmitBatch,
    SubmitJob,
    batch_out,
    job_out,
)
from conveyor.entrypoints.api.services import Services
from conveyor.entrypoints.logging import get_logger
from conveyor.entrypoints.tasks import TaskRegistry, TaskSpec

log = get_logger("conveyor.api")

MAX_JOB_ID = 2**63 - 1
DEFAULT_PAGE_SIZE = 50
LIST_PARAMETERS = frozenset({"state", "queue", "task", "limit", "cursor"})
_STATE_NAMES = ", ".join(state.value for state in JobState)


def parse_job_id(raw: str) -> JobId:
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_JOB_ID:
        raise _invalid_parameter(
            "job_id", f"{raw!r} is not a job id; use a positive integer"
        )
    return JobId(value)


def encode_cursor(job_id: JobId | None) -> str | None:
    """Make an opaque cursor; clients pass it back unchanged as `cursor`."""
    if job_id is None:
        return None
    return base64.urlsafe_b64encode(f"before:{job_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> JobId:
    problem = "is invalid; pass the next_cursor of a previous page unchanged"
    _check_no_nul("cursor", cursor)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (ValueError, binascii.Error, UnicodeError):
        raise _invalid_parameter("cursor", problem) from None
    prefix, _, number = text.partition(":")
    if prefix != "before" or not number.isdigit() or not 1 <= int(number) <= MAX_JOB_ID:
        raise _invalid_parameter("cursor", problem)
    return JobId(int(number))


def parse_states(values: Sequence[str] | None) -> frozenset[JobState]:
    states = set()
    for name in _split_values("state", values):
        try:
            states.add(JobState(name.upper()))
        except ValueError:
            raise _invalid_parameter(
                "state", f"{name!r} is not a job state; use one of {_STATE_NAMES}"
            ) from None
    return frozenset(states)


def _split_values(name: str, values: Sequence[str] | None) -> list[str]:
    """Accept both ?state=A&state=B and ?state=A,B."""
    items: list[str] = []
    for value in values or ():
        _check_no_nul(name, value)
        items.extend(part.strip() for part in value.split(",") if part.strip())
    return items


def _check_no_nul(name: str, value: str) -> None:
    # PostgreSQL cannot compare a text value holding NUL, so it fails the query.
    if "\x00" in value:
        raise _invalid_parameter(name, "contains a NUL character (%00)")


def check_query_names(names: Iterable[str]) -> None:
    """Reject query parameters GET /jobs does not know, as bodies reject unknown fields."""
    for name in names:
        if name not in LIST_PARAMETERS:
            raise _invalid_parameter(
                name,
                "is not a query parameter of GET /jobs; use "
                + ", ".join(sorted(LIST_PARAMETERS)),
            )


def _invalid_parameter(name: str, problem: str) -> ValidationException:
    return ValidationException(
        detail=f"{name}: {problem}", extra=[{"key": name, "message": problem}]
    )


class JobsController(Controller):
    path = "/jobs"
    tags = ["jobs"]  # noqa: RUF012 (Litestar declares it as a list)

    @post(
        "/",
        dto=StrictJsonDTO[SubmitJob],
        return_dto=None,
        status_code=201,
        responses={
            200: ResponseSpec(
                data_container=JobOut,
                description="The job submitted before with the same idempotency key",
                generate_examples=False,
            ),
            **error_responses(400, 409, 413, 422, 503),
        },
        summary="Submit a job",
        description=(
            "Returns 201 with the new job, or 200 with the existing job when the "
            "idempotency key was used before by the same request; 409 when it was "
            "used by a different request. The key may come in the body or in the "
            "Idempotency-Key header."
        ),
    )
    async def submit(
        self,
        data: JSONBody[SubmitJob],
        services: Services,
        header_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
    ) -> Response[JobOut]:
        if (
            header_key is not None
            and data.idempotency_key is not None
            and header_key != data.idempotency_key
        ):
            raise InvalidJobRequest(
                "idempotency_key",
                "the Idempotency-Key header and the body field differ; send one of them",
            )
        _check_payload_size(data, "payload", services.max_payload_bytes)
        spec = _task_spec(data.task, "task", services.tasks)
        request = data.to_request(header_key, spec)

        submission = await services.batcher.submit(request)

        job = submission.job
        # DEBUG, not INFO: one line per request costs about a third of the
        # API's submit throughput (measured with wrk on the memory store).
        log.debug(
            "job_submitted" if submission.created else "job_submission_repeated",
            job_id=job.id,
            task=job.task,
            queue=job.queue,
        )
        return Response(
            job_out(job),
            status_code=201 if submission.created else 200,
            headers={"Location": f"/jobs/{job.id}"},
        )

    @get(
        "/{job_id:str}",
        responses=error_responses(404, 422, 503),
        summary="Get a job with its attempts",
    )
    async def get_job(self, job_id: FromPath[str], services: Services) -> JobOut:
        job = await services.query_jobs.get(parse_job_id(job_id))
        return job_out(job)

    @get(
        "/",
        responses=error_responses(422, 503),
        summary="List jobs, newest first",
        description=(
            "Filters take repeated or comma-separated values. Pass next_cursor "
            "back as cursor for the next page; it is null on the last page."
        ),
    )
    async def list_jobs(
        self,
        request: Request[Any, Any, Any],
        services: Services,
        states: Annotated[
            list[str] | None, QueryParameter(name="state", required=False)
        ] = None,
        queue: FromQuery[list[str] | None] = None,
        task: FromQuery[list[str] | None] = None,
        limit: FromQuery[int] = DEFAULT_PAGE_SIZE,
        cursor: FromQuery[str | None] = None,
    ) -> JobPageOut:
        check_query_names(request.query_params.keys())
        query = JobQuery(
            states=parse_states(states),
            queues=frozenset(_split_values("queue", queue)),
            tasks=frozenset(_split_values("task", task)),
            limit=limit,
            before_id=None if cursor is None else decode_cursor(cursor),
        )

        page = await services.query_jobs.list_jobs(query)

        return JobPageOut(
            items=[job_out(job, with_attempts=False) for job in page.jobs],
            next_cursor=encode_cursor(page.next_cursor),
        )

    @post(
        "/{job_id:str}/cancel",
        status_code=200,
        responses=error_responses(404, 409, 422, 503),
        summary="Cancel a PENDING or FAILED job",
    )
    async def cancel(self, job_id: FromPath[str], services: Services) -> JobOut:
        job = await services.manage_jobs.cancel(parse_job_id(job_id))
        log.info("job_cancelled", job_id=job.id, task=job.task, queue=job.queue)
        return job_out(job)

    @post(
        "/{job_id:str}/requeue",
        status_code=200,
        responses=error_responses(404, 409, 422, 503),
        summary="Send a DEAD, FAILED or CANCELLED job back to PENDING",
    )
    async def requeue(self, job_id: FromPath[str], services: Services) -> JobOut:
        job = await services.manage_jobs.requeue(parse_job_id(job_id))
        log.info("job_requeued", job_id=job.id, task=job.task, queue=job.queue)
        return job_out(job)


class BatchController(Controller):
    """Batch submission, mounted on its own router with a larger body limit."""

    path = "/jobs/batch"
    tags = ["jobs"]  # noqa: RUF012 (Litestar declares it as a list)

    @post(
        "/",
        dto=StrictJsonDTO[SubmitBatch],
        return_dto=None,
        status_code=201,
        responses={
            200: ResponseSpec(
                data_container=BatchOut,
                description="Every job was submitted before with the same key",
                generate_examples=False,
            ),
            **error_responses(400, 409, 413, 422, 503),
        },
        summary="Submit up to 10,000 jobs in one request",
        description=(
            "Each item may carry its own idempotency_key. The response lists the "
            "job id of each item in order, with status 201 (created) or 200 "
            "(repeat). The request returns 201 if any job was created, else 200. "
            "If an item's key belongs to a job with a different request, the "
            "answer is 409 naming the item (jobs[N].idempotency_key) and no job "
            "of the batch is stored."
        ),
    )
    async def submit_batch(
        self,
        data: JSONBody[SubmitBatch],
        services: Services,
        header_key: Annotated[
            str | None, HeaderParameter(name="Idempotency-Key", required=False)
        ] = None,
    ) -> Response[BatchOut]:
        if header_key is not None:
            # One key cannot cover many jobs, and ignoring it would hide that.
            raise InvalidJobRequest(
                "Idempotency-Key",
                "a batch takes no Idempotency-Key header; give each job its own "
                "idempotency_key field",
            )
        limit = services.max_payload_bytes
        tasks = services.tasks
        # Batches mostly repeat a few task names, so each is looked up once.
        specs: dict[str, TaskSpec | None] = {}
        requests = []
        for index, item in enumerate(data.jobs):
            if len(item.payload) > limit:
                _check_payload_size(item, f"jobs[{index}].payload", limit)
            task = item.task
            if task in specs:
                spec = specs[task]
            else:
                spec = specs[task] = _task_spec(task, f"jobs[{index}].task", tasks)
            try:
                request = item.to_request(spec=spec)
            except InvalidJobRequest as exc:
                raise InvalidJobRequest(
                    f"jobs[{index}].{exc.field}", exc.problem
                ) from None
            requests.append(request)

        submissions = await services.submit_jobs.submit_many(requests)

        created = sum(1 for s in submissions if s.created)
        log.debug("jobs_submitted", count=len(submissions), created=created)
        return Response(batch_out(submissions), status_code=201 if created else 200)


def _check_payload_size(item: SubmitJob, field: str, limit: int) -> None:
    size = len(item.payload)
    if size > limit:
        raise PayloadTooLarge(
            field, f"is {size} bytes of JSON; the maximum is {limit} bytes"
        )


def _task_spec(task: str, field: str, tasks: TaskRegistry | None) -> TaskSpec | None:
    """Return the task's spec, or None when the API loaded no tasks to check against."""
    if tasks is None:
        return None
    spec = tasks.get(task)
    if spec is None:
        raise InvalidJobRequest(
            field,
            f"{task!r} is not a registered task; known tasks: {tasks.describe_names()}",
        )
    return spec
