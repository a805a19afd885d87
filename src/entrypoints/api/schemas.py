"""JSON bodies of the HTTP API as msgspec Structs, and their conversions.

Request bodies forbid unknown fields and are decoded in msgspec's strict
mode, so "5" is not accepted where a number is expected. The field names
are the domain's names: job_id, task, queue, run_at, attempt, max_attempts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Generic, TypeVar

import msgspec
from litestar.dto import MsgspecDTO
from litestar.openapi.spec import Schema
from litestar.plugins import OpenAPISchemaPlugin

from conveyor.application.ports import QueueCounts, Submission
from conveyor.application.submitting import MAX_BATCH_SIZE
from conveyor.domain.errors import InvalidJobRequest
from conveyor.domain.job import (
    DEFAULT_QUEUE,
    MAX_DELAY,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Attempt,
    ErrorInfo,
    Job,
    JobRequest,
)
from conveyor.domain.states import JobState
from conveyor.entrypoints.tasks import TaskSpec

if TYPE_CHECKING:
    from litestar._openapi.schema_generation import SchemaCreator
    from litestar.typing import FieldDefinition

StructT = TypeVar("StructT", bound=msgspec.Struct)

NULL_PAYLOAD = msgspec.Raw(b"null")


class StrictJsonDTO(MsgspecDTO[StructT], Generic[StructT]):
    """Decode a request body straight into its Struct with msgspec's strict rules.

    Litestar's own decoding converts leniently ("5" becomes 5). Decoding
    errors propagate as msgspec errors and are mapped to 400 or 422 in
    errors.py. The DTO still gives the OpenAPI schema of the body.
    """

    def decode_bytes(self, value: bytes) -> Any:
        try:
            return msgspec.json.decode(value, type=self.model_type, strict=True)
        except RecursionError:
            raise msgspec.DecodeError("JSON is nested too deeply") from None
        except msgspec.DecodeError:
            # Only failed requests pay for this second look.
            try:
                field = find_lone_surrogate(value)
            except RecursionError:
                field = None
            if field is not None:
                raise InvalidJobRequest(
                    field,
                    "is not valid JSON: a string contains a lone UTF-16 surrogate "
                    "escape (\\ud800 to \\udfff without its pair)",
                ) from None
            raise


_SURROGATE = re.compile("[\ud800-\udfff]")
_JOB_FIELDS = frozenset(("task", "payload", "queue", "run_at", "idempotency_key"))


def find_lone_surrogate(body: bytes) -> str | None:
    """Return the field whose string has a lone surrogate escape, if `body` has one.

    msgspec rejects such strings, with "Input data was truncated" for a lone
    high surrogate; Python's json module accepts them, so it finds where.
    The path stops at a job's field: "payload", "jobs[2].payload".
    """
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return None
    path: list[str] = []
    while True:
        if isinstance(value, str):
            return _join_path(path) if _SURROGATE.search(value) else None
        if isinstance(value, list):
            entries: list[tuple[str, Any]] = [
                (f"[{index}]", item) for index, item in enumerate(value)
            ]
        elif isinstance(value, dict):
            if any(_SURROGATE.search(key) for key in value):
                return _join_path(path)
            entries = [(f".{key}", item) for key, item in value.items()]
        else:
            return None
        for step, item in entries:
            if _holds_surrogate(item):
                path.append(step)
                if step[1:] in _JOB_FIELDS:
                    return _join_path(path)
                value = item
                break
        else:
            return None


def _holds_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _SURROGATE.search(value) is not None
    if isinstance(value, list):
        return any(_holds_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(
            _SURROGATE.search(key) is not None or _holds_surrogate(item)
            for key, item in value.items()
        )
    return False


def _join_path(path: list[str]) -> str:
    text = "".join(path).lstrip(".")
    return text if text and not text.startswith("[") else "body"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


Priority = Annotated[int, msgspec.Meta(ge=MIN_PRIORITY, le=MAX_PRIORITY)]
MAX_DELAY_SECONDS = MAX_DELAY.total_seconds()


class SubmitJob(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A job to submit. Give at most one of run_at (with a UTC offset) and delay.

    The payload stays raw JSON until `to_request`, so that its size in bytes
    is known exactly and checked without encoding it again.
    """

    # JobRequest checks names, and its messages list the valid characters.
    task: str
    payload: msgspec.Raw = msgspec.field(default_factory=lambda: NULL_PAYLOAD)
    # None: the task's registered queue when the API loaded the task, else "default".
    queue: str | None = None
    priority: Priority = 0
    # Optional fields carry no msgspec constraints because Litestar's OpenAPI
    # generation rejects them on optional types; JobRequest checks each one.
    run_at: datetime | None = None
    delay: float | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None

    def to_request(
        self, header_key: str | None = None, spec: TaskSpec | None = None
    ) -> JobRequest:
        """Build the domain request; `spec` gives the task's default queue and attempts."""
        key = self.idempotency_key if header_key is None else header_key
        if key is not None and "\x00" in key:
            raise InvalidJobRequest(
                "idempotency_key", "contains \\u0000, which PostgreSQL cannot store"
            )
        queue = self.queue
        if queue is None:
            queue = spec.queue if spec is not None else DEFAULT_QUEUE
        max_attempts = self.max_attempts
        if max_attempts is None and spec is not None:
            max_attempts = spec.max_attempts
        run_at = self.run_at
        if run_at is not None and run_at.utcoffset() is not None:
            run_at = _run_at_in_utc(run_at)
        return JobRequest(
            task=self.task,
            payload=decode_payload(self.payload),
            queue=queue,
            priority=self.priority,
            run_at=run_at,
            delay=_delay(self.delay),
            max_attempts=max_attempts,
            idempotency_key=key,
        )


def decode_payload(raw: msgspec.Raw) -> Any:
    """Decode a payload, rejecting what PostgreSQL's jsonb cannot store."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError as exc:
        # Only value errors get here, such as a number out of range, because
        # the request body as a whole was already parsed.
        raise InvalidJobRequest("payload", str(exc)) from None
    if _has_nul_escape(bytes(raw)):
        raise InvalidJobRequest(
            "payload", "contains \\u0000, which PostgreSQL cannot store in JSON"
        )
    return value


def _has_nul_escape(text: bytes) -> bool:
    r"""Tell whether the JSON text has a \u0000 escape (not an escaped backslash)."""
    start = text.find(b"\\u0000")
    while start != -1:
        backslashes = 0
        while start - backslashes - 1 >= 0 and text[start - backslashes - 1] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return True
        start = text.find(b"\\u0000", start + 1)
    return False


def _run_at_in_utc(run_at: datetime) -> datetime:
    """Convert run_at to UTC, bounded like delay: at most MAX_DELAY from now.

    A time in the past is fine: the job is due at once.
    """
    try:
        utc = run_at.astimezone(UTC)
    except OverflowError:
        # Near year 1 or 9999 the UTC time falls outside what datetime holds.
        raise InvalidJobRequest(
            "run_at",
            f"{run_at.isoformat()} is out of range once converted to UTC",
        ) from None
    if utc > datetime.now(UTC) + MAX_DELAY:
        raise InvalidJobRequest(
            "run_at",
            f"{run_at.isoformat()} is too far ahead; the latest is "
            f"{MAX_DELAY.days} days from now",
        )
    return utc


def _delay(seconds: float | None) -> timedelta | None:
    # Checked here because timedelta() overflows long before a float does.
    if seconds is None:
        return None
    if not seconds <= MAX_DELAY_SECONDS:
        raise InvalidJobRequest(
            "delay",
            f"{seconds} seconds is too long; the maximum is {MAX_DELAY_SECONDS:.0f} "
            f"seconds ({MAX_DELAY.days} days)",
        )
    return timedelta(seconds=seconds)


class RawJsonSchemaPlugin(OpenAPISchemaPlugin):
    """Describe msgspec.Raw fields (job payloads) as any JSON value in OpenAPI."""

    @staticmethod
    def is_plugin_supported_type(value: Any) -> bool:
        return value is msgspec.Raw

    def to_openapi_schema(
        self, field_definition: FieldDefinition, schema_creator: SchemaCreator
    ) -> Schema:
        return Schema(description="any JSON value")


class SubmitBatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    jobs: Annotated[list[SubmitJob], msgspec.Meta(max_length=MAX_BATCH_SIZE)]


class ErrorOut(msgspec.Struct, kw_only=True):
    type: str
    message: str
    traceback: str = ""


class AttemptOut(msgspec.Struct, kw_only=True):
    attempt: int
    worker_id: str
    started_at: datetime
    finished_at: datetime | None
    outcome: str | None
    error: ErrorOut | None


class JobOut(msgspec.Struct, kw_only=True):
    """A job; `attempts` is present on single-job responses only."""

    job_id: int
    task: str
    queue: str
    payload: Any
    priority: int
    state: JobState
    run_at: datetime
    attempt: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    worker_id: str | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: Any = None
    last_error: ErrorOut | None = None
    attempts: list[AttemptOut] | msgspec.UnsetType = msgspec.UNSET


class JobPageOut(msgspec.Struct, kw_only=True):
    items: list[JobOut]
    next_cursor: str | None


class BatchItemOut(msgspec.Struct, kw_only=True):
    """One submitted job of a batch: status 201 if created, 200 if a repeat."""

    job_id: int
    status: int


class BatchOut(msgspec.Struct, kw_only=True):
    jobs: list[BatchItemOut]


class QueueCountsOut(msgspec.Struct, kw_only=True):
    queue: str
    counts: dict[str, int]


class QueuesOut(msgspec.Struct, kw_only=True):
    queues: list[QueueCountsOut]


class StatusOut(msgspec.Struct, kw_only=True):
    status: str


class ProblemOut(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Every error response: the status, what was wrong, and on which field."""

    status_code: int
    detail: str
    field: str | None = None
    job_id: int | None = None


def error_out(error: ErrorInfo | None) -> ErrorOut | None:
    if error is None:
        return None
    return ErrorOut(type=error.type, message=error.message, traceback=error.traceback)


def attempt_out(attempt: Attempt) -> AttemptOut:
    return AttemptOut(
        attempt=attempt.attempt,
        worker_id=attempt.worker_id,
        started_at=attempt.started_at,
        finished_at=attempt.finished_at,
        outcome=None if attempt.outcome is None else attempt.outcome.value,
        error=error_out(attempt.error),
    )


def job_out(job: Job, with_attempts: bool = True) -> JobOut:
    return JobOut(
        job_id=job.id,
        task=job.task,
        queue=job.queue,
        payload=job.payload,
        priority=job.priority,
        state=job.state,
        run_at=job.run_at,
        attempt=job.attempt,
        max_attempts=job.max_attempts,
        created_at=job.created_at,
        updated_at=job.updated_at,
        idempotency_key=job.idempotency_key,
        worker_id=job.worker_id,
        lease_expires_at=job.lease_expires_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        result=job.result,
        last_error=error_out(job.last_error),
        attempts=[attempt_out(a) for a in job.attempts]
        if with_attempts
        else msgspec.UNSET,
    )


def batch_out(submissions: Sequence[Submission]) -> BatchOut:
    return BatchOut(
        jobs=[
            BatchItemOut(job_id=s.job_id, status=201 if s.created else 200)
            for s in submissions
        ]
    )


def queues_out(counts: Sequence[QueueCounts]) -> QueuesOut:
    return QueuesOut(
        queues=[
            QueueCountsOut(
                queue=entry.queue,
                counts={state.value: entry.counts.get(state, 0) for state in JobState},
            )
            for entry in counts
        ]
    )
