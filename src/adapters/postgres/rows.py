"""Conversion between database rows and domain objects."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import msgspec

from conveyor.adapters.postgres.tables import jobs
from conveyor.application.ports import NewJob, Submission
from conveyor.domain.errors import InvalidJobRequest
from conveyor.domain.job import (
    Attempt,
    AttemptOutcome,
    ErrorInfo,
    Job,
    JobId,
    JsonValue,
    LeaseToken,
    WorkerId,
)
from conveyor.domain.states import JobState

# PostgreSQL stores no NUL character in text, nor the escape \u0000 in jsonb.
_NUL = "\x00"
_ESCAPED_NUL = "\\u0000"
REPLACEMENT_CHARACTER = "\ufffd"


def encode_payload(payload: JsonValue) -> str:
    """Encode a job payload as JSON text; raise InvalidJobRequest if it contains NUL."""
    text = msgspec.json.encode(payload).decode()
    if _ESCAPED_NUL in text and _contains_nul(payload):
        raise InvalidJobRequest(
            "payload",
            "contains the character U+0000, which PostgreSQL cannot store; "
            "remove it or encode the data, for example as base64",
        )
    return text


def encode_result(result: JsonValue) -> str:
    """Encode a job result as JSON text, with NUL characters replaced by U+FFFD.

    A result is stored after the job ran, so it is repaired rather than
    rejected: rejecting it would fail the completion of a job that succeeded.
    """
    text = msgspec.json.encode(result).decode()
    if _ESCAPED_NUL in text and _contains_nul(result):
        text = msgspec.json.encode(_without_nul(result)).decode()
    return text


def storable_text(text: str) -> str:
    """Return `text` with NUL characters replaced by U+FFFD."""
    return text.replace(_NUL, REPLACEMENT_CHARACTER) if _NUL in text else text


def _contains_nul(value: JsonValue) -> bool:
    if isinstance(value, str):
        return _NUL in value
    if isinstance(value, list):
        return any(_contains_nul(item) for item in value)
    if isinstance(value, dict):
        return any(_NUL in key or _contains_nul(item) for key, item in value.items())
    return False


def _without_nul(value: JsonValue) -> JsonValue:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {storable_text(key): _without_nul(item) for key, item in value.items()}
    return value


# Rows carry the columns of `jobs` first, in this order; job_from_row unpacks
# them by position, which is much faster than by name.
JOB_COLUMNS = (
    "id",
    "task",
    "queue",
    "payload",
    "priority",
    "state",
    "run_at",
    "attempt",
    "max_attempts",
    "idempotency_key",
    "fingerprint",
    "worker_id",
    "lease_token",
    "lease_expires_at",
    "started_at",
    "finished_at",
    "result",
    "last_error_type",
    "last_error_message",
    "last_error_traceback",
    "created_at",
    "updated_at",
)
if tuple(column.name for column in jobs.c) != JOB_COLUMNS:
    raise RuntimeError("JOB_COLUMNS does not match the columns of the jobs table")

_STATES = {state.value: state for state in JobState}


def job_from_row(row: Sequence[Any]) -> Job:
    """Build a Job, without attempts, from a row that starts with every jobs column."""
    (
        job_id,
        task,
        queue,
        payload,
        priority,
        state,
        run_at,
        attempt,
        max_attempts,
        idempotency_key,
        fingerprint,
        worker_id,
        lease_token,
        lease_expires_at,
        started_at,
        finished_at,
        result,
        error_type,
        error_message,
        error_traceback,
        created_at,
        updated_at,
    ) = row[: len(JOB_COLUMNS)]
    last_error = None
    if error_type is not None:
        last_error = ErrorInfo(error_type, error_message or "", error_traceback or "")
    return Job(
        id=job_id,
        task=task,
        queue=queue,
        payload=payload,
        priority=priority,
        state=_STATES[state],
        run_at=run_at,
        attempt=attempt,
        max_attempts=max_attempts,
        created_at=created_at,
        updated_at=updated_at,
        idempotency_key=idempotency_key,
        fingerprint=fingerprint,
        worker_id=worker_id,
        lease_token=lease_token,
        lease_expires_at=lease_expires_at,
        started_at=started_at,
        finished_at=finished_at,
        result=result,
        last_error=last_error,
    )


def claimed_job(
    row: Sequence[Any], worker_id: WorkerId, lease_token: LeaseToken
) -> Job:
    """Build a claimed Job from a row of the columns in statements.CLAIMED_COLUMNS."""
    (
        job_id,
        task,
        queue,
        payload,
        priority,
        run_at,
        attempt,
        max_attempts,
        idempotency_key,
        fingerprint,
        lease_expires_at,
        started_at,
        error_type,
        error_message,
        error_traceback,
        created_at,
    ) = row
    last_error = None
    if error_type is not None:
        last_error = ErrorInfo(error_type, error_message or "", error_traceback or "")
    return Job(
        job_id,
        task,
        queue,
        payload,
        priority,
        JobState.IN_PROGRESS,
        run_at,
        attempt,
        max_attempts,
        created_at,
        started_at,
        idempotency_key,
        fingerprint,
        worker_id,
        lease_token,
        lease_expires_at,
        started_at,
        None,
        None,
        last_error,
    )


class NewJobSubmission(Submission):
    """The submission of a job that an insert stored; the Job is built on first read.

    The fields the insert did not return come from the request, or are the
    initial values of a PENDING job. The payload is the request's, as in the
    in-memory store, not the stored jsonb read back.
    """

    __slots__ = ("_created_at", "_new_job", "_run_at")

    def __init__(
        self, job_id: JobId, new_job: NewJob, run_at: datetime, created_at: datetime
    ) -> None:
        # Building a Job took about 3 us of CPU time per job in a measurement,
        # as much as the rest of the client's work on a batch, and most
        # callers of a batch read only the ids.
        self._job = None
        self.job_id = job_id
        self.created = True
        self._new_job = new_job
        self._run_at = run_at
        self._created_at = created_at

    def _build_job(self) -> Job:
        new_job = self._new_job
        request = new_job.request
        return Job(
            self.job_id,
            request.task,
            request.queue,
            request.payload,
            request.priority,
            JobState.PENDING,
            self._run_at,
            0,
            new_job.max_attempts,
            self._created_at,
            self._created_at,
            request.idempotency_key,
            new_job.fingerprint,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        )


def job_with_attempts(row: Any) -> Job:
    """Build a Job from a row that also contains the `attempts` JSON column.

    The attempts are the recorded ones plus the one that lives in the job
    row: the current attempt while the job runs, or the completed attempt
    of a COMPLETED job, which gets no job_attempts row.
    """
    job = job_from_row(row)
    attempts = [_attempt_from_json(item) for item in row["attempts"] or ()]
    if job.state is JobState.IN_PROGRESS:
        assert job.worker_id is not None and job.started_at is not None
        attempts.append(Attempt(job.attempt, job.worker_id, job.started_at))
    elif job.state is JobState.COMPLETED and not _ends_completed(attempts):
        assert job.worker_id is not None and job.started_at is not None
        attempts.append(
            Attempt(
                job.attempt,
                job.worker_id,
                job.started_at,
                job.finished_at,
                AttemptOutcome.COMPLETED,
            )
        )
    return replace(job, attempts=tuple(attempts))


def _ends_completed(attempts: list[Attempt]) -> bool:
    """Tell whether the last recorded attempt completed the job.

    Only stores written before completions stopped inserting attempt rows
    contain such a row.
    """
    return bool(attempts) and attempts[-1].outcome is AttemptOutcome.COMPLETED


def _attempt_from_json(item: dict[str, Any]) -> Attempt:
    error = None
    if item["error_type"] is not None:
        error = ErrorInfo(
            item["error_type"],
            item["error_message"] or "",
            item["error_traceback"] or "",
        )
    return Attempt(
        attempt=item["attempt"],
        worker_id=WorkerId(item["worker_id"]),
        started_at=datetime.fromisoformat(item["started_at"]),
        finished_at=datetime.fromisoformat(item["finished_at"]),
        outcome=AttemptOutcome(item["outcome"]),
        error=error,
    )
