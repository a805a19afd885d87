"""Ports: what the use cases need from a job store, a clock and random sources.

Every store implements JobRepository with the same behaviour; the contract
suite in tests/contract checks each one. Due times and lease expiry are
judged by the store's own clock (the database's clock for PostgreSQL), so
that a worker with a wrong clock can neither claim early nor steal a lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from conveyor.domain.job import (
    ErrorInfo,
    Job,
    JobId,
    JobRequest,
    JsonValue,
    LeaseToken,
    WorkerId,
)
from conveyor.domain.states import JobState


class Clock(Protocol):
    def now(self) -> datetime:
        """Return the current time, timezone-aware, in UTC."""
        ...


class RandomSource(Protocol):
    def random(self) -> float:
        """Return a float in [0, 1) for backoff jitter."""
        ...


class TokenSource(Protocol):
    def new_lease_token(self) -> LeaseToken: ...


@dataclass(frozen=True, slots=True)
class NewJob:
    """A job request with every default filled in, ready to be stored.

    `fingerprint` is set only for requests with an idempotency key, the one
    case where a repeat must be compared with the original.
    """

    request: JobRequest
    max_attempts: int
    fingerprint: str | None


class Submission:
    """The job a submission stored or found, and whether the submission created it.

    `created` is False when the idempotency key belonged to an existing job.
    A store may subclass Submission to build the job on the first read of
    `job` (see _build_job), so that a caller that reads only `job_id` and
    `created`, as a batch submission usually does, does not pay for it.
    """

    __slots__ = ("_job", "created", "job_id")

    def __init__(self, job: Job, created: bool) -> None:
        self._job: Job | None = job
        self.job_id = job.id
        self.created = created

    @property
    def job(self) -> Job:
        job = self._job
        if job is None:
            job = self._job = self._build_job()
        return job

    def _build_job(self) -> Job:
        """Build the job; a subclass that leaves `_job` None at first overrides this."""
        raise NotImplementedError

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Submission):
            return NotImplemented
        return (self.job, self.created) == (other.job, other.created)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Submission(job={self.job!r}, created={self.created!r})"


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    worker_id: WorkerId
    queues: tuple[str, ...]
    limit: int
    lease_token: LeaseToken
    lease_duration: timedelta


@dataclass(frozen=True, slots=True)
class Lease:
    """A worker's claim on a job: the job id and the token issued with the claim."""

    job_id: JobId
    lease_token: LeaseToken


@dataclass(frozen=True, slots=True)
class Completion:
    lease: Lease
    result: JsonValue = None


@dataclass(frozen=True, slots=True)
class Failure:
    """A failed attempt and the state the domain chose for it (FAILED or DEAD)."""

    lease: Lease
    target: JobState
    retry_delay: timedelta
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class JobQuery:
    states: frozenset[JobState] = frozenset()
    queues: frozenset[str] = frozenset()
    tasks: frozenset[str] = frozenset()
    limit: int = 50
    # Cursor: return jobs with an id lower than this one (newest first).
    before_id: JobId | None = None


@dataclass(frozen=True, slots=True)
class JobPage:
    jobs: list[Job]
    next_cursor: JobId | None


@dataclass(frozen=True, slots=True)
class QueueCounts:
    queue: str
    counts: dict[JobState, int] = field(default_factory=dict)


class JobRepository(Protocol):
    """Persistence of jobs and their attempts.

    Methods that act on a claimed job take its Lease. They change the job only
    while it is IN_PROGRESS under that token, and return the ids they changed.
    """

    async def add(self, new_job: NewJob) -> Submission:
        """Insert a job, or return the existing one holding the same idempotency key.

        For a repeated key the existing job is returned with created=False even
        when its fingerprint differs; the caller decides whether that conflicts.
        """
        ...

    async def add_many(self, new_jobs: Sequence[NewJob]) -> list[Submission]:
        """Insert many jobs in one round trip; results keep the input order.

        Raises IdempotencyConflict, and stores none of the jobs, when the key
        of item N belongs to a job whose fingerprint differs from the item's.
        """
        ...

    async def get(self, job_id: JobId) -> Job | None:
        """Return the job with its attempts, oldest first."""
        ...

    async def list_jobs(self, query: JobQuery) -> JobPage: ...

    async def counts(self) -> list[QueueCounts]: ...

    async def claim(self, request: ClaimRequest) -> list[Job]:
        """Lease up to request.limit due jobs from the queues.

        Due jobs come out by priority (highest first), then due time, then id.
        Each claimed job moves to IN_PROGRESS with its attempt counted.
        """
        ...

    async def extend_leases(
        self, leases: Sequence[Lease], duration: timedelta
    ) -> set[JobId]: ...

    async def complete(self, completions: Sequence[Completion]) -> set[JobId]: ...

    async def fail(self, failures: Sequence[Failure]) -> set[JobId]: ...

    async def release(self, leases: Sequence[Lease]) -> set[JobId]:
        """Hand unfinished jobs back to PENDING without counting the attempt."""
        ...

    async def find_expired(self, limit: int) -> list[Job]:
        """Return IN_PROGRESS jobs whose lease has expired, oldest expiry first."""
        ...

    async def expire(self, failures: Sequence[Failure]) -> set[JobId]:
        """Record lease expiries; acts only on jobs whose lease is still expired.

        Several workers may call this for the same jobs at once: each job is
        changed by at most one of them.
        """
        ...

    async def set_state(
        self, job_id: JobId, expected: JobState, target: JobState
    ) -> Job | None:
        """Move a job that is not leased (cancel, requeue) if it is still in `expected`.

        Returns the changed job, or None when its state changed meanwhile.
        """
        ...
