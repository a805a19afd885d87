"""Conversion between database rows and domain objects."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

import msgspec

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


def encode_json(value: JsonValue) -> str:
    return msgspec.json.encode(value).decode()


def job_from_row(row: Any) -> Job:
    """Build a Job from a row holding every column of `jobs`, without attempts."""
    last_error = None
    if row.last_error_type is not None:
        last_error = ErrorInfo(
            row.last_error_type,
            row.last_error_message or "",
            row.last_error_traceback or "",
        )
    return Job(
        id=JobId(row.id),
        task=row.task,
        queue=row.queue,
        payload=row.payload,
        priority=row.priority,
        state=JobState(row.state),
        run_at=row.run_at,
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        created_at=row.created_at,
        updated_at=row.updated_at,
        idempotency_key=row.idempotency_key,
        fingerprint=row.fingerprint,
        worker_id=None if row.worker_id is None else WorkerId(row.worker_id),
        lease_token=None if row.lease_token is None else LeaseToken(row.lease_token),
        lease_expires_at=row.lease_expires_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        result=row.result,
        last_error=last_error,
    )


def job_with_attempts(row: Any) -> Job:
    """Build a Job from a row that also holds the `attempts` JSON column.

    The attempts are the finished ones plus, while the job runs, the current
    attempt, which lives in the job row until it ends.
    """
    job = job_from_row(row)
    attempts = [_attempt_from_json(item) for item in row.attempts or ()]
    if job.state is JobState.IN_PROGRESS:
        assert job.worker_id is not None and job.started_at is not None
        attempts.append(Attempt(job.attempt, job.worker_id, job.started_at))
    return replace(job, attempts=tuple(attempts))


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
