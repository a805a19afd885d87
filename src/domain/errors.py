"""Domain errors.

ConveyorError
 ├── InvalidJobRequest      a submitted field is invalid (maps to HTTP 422)
 ├── JobNotFound            no job has the id (404)
 ├── IllegalTransition      the lifecycle forbids the state change (409)
 ├── IdempotencyConflict    a key is reused with a different request (409)
 ├── LeaseLost              the caller no longer holds the job's lease (409)
 └── StoreUnavailable       the job store cannot be reached (503)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conveyor.domain.states import JobState


class ConveyorError(Exception):
    """Root of every error that conveyor raises on purpose."""


class InvalidJobRequest(ConveyorError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class JobNotFound(ConveyorError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} not found")
        self.job_id = job_id


class IllegalTransition(ConveyorError):
    def __init__(self, job_id: int | None, current: JobState, target: JobState) -> None:
        subject = "new job" if job_id is None else f"job {job_id}"
        super().__init__(
            f"{subject} cannot move from {current.value} to {target.value}"
        )
        self.job_id = job_id
        self.current = current
        self.target = target


class IdempotencyConflict(ConveyorError):
    """A key that a job with a different request already holds.

    `field` names the key in the request: `idempotency_key`, or
    `jobs[N].idempotency_key` for item N of a batch.
    """

    def __init__(
        self, key: str, existing_job_id: int, field: str = "idempotency_key"
    ) -> None:
        super().__init__(
            f"idempotency key {key!r} was already used by job {existing_job_id} "
            "with a different request; use a new key or repeat the original request"
        )
        self.key = key
        self.existing_job_id = existing_job_id
        self.field = field


class LeaseLost(ConveyorError):
    def __init__(self, job_id: int) -> None:
        super().__init__(
            f"job {job_id}: lease expired or was taken over by another worker"
        )
        self.job_id = job_id


class StoreUnavailable(ConveyorError):
    """The job store could not be reached; the operation may be retried."""
