"""Use cases of a worker: claim, heartbeat, complete, fail, release, recover."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from conveyor.application.ports import (
    ClaimRequest,
    Completion,
    Failure,
    JobRepository,
    Lease,
    RandomSource,
    TokenSource,
)
from conveyor.domain.job import ErrorInfo, Job, JobId, JsonValue, WorkerId
from conveyor.domain.retry import GiveUp, RetryAt, RetryPolicy
from conveyor.domain.states import JobState

PolicyLookup = Callable[[str], RetryPolicy]


@dataclass(frozen=True, slots=True)
class FailureOutcome:
    """The result of recording a failure: FAILED with a retry delay, or DEAD."""

    job_id: JobId
    target: JobState
    retry_delay: timedelta
    applied: bool


@dataclass(frozen=True, slots=True)
class Recovery:
    """A job whose lease expired and what became of it."""

    job: Job
    target: JobState
    retry_delay: timedelta


def lease_of(job: Job) -> Lease:
    if job.lease_token is None:
        raise ValueError(f"job {job.id} is {job.state.value} and has no lease")
    return Lease(job.id, job.lease_token)


class ExecuteJobs:
    def __init__(
        self,
        repository: JobRepository,
        tokens: TokenSource,
        random: RandomSource,
        policy_for: PolicyLookup,
        lease_duration: timedelta,
    ) -> None:
        if lease_duration <= timedelta(0):
            raise ValueError(f"lease_duration must be positive, got {lease_duration}")
        self._repository = repository
        self._tokens = tokens
        self._random = random
        self._policy_for = policy_for
        self.lease_duration = lease_duration

    async def claim(
        self, worker_id: WorkerId, queues: Sequence[str], limit: int
    ) -> list[Job]:
        if limit < 1:
            return []
        request = ClaimRequest(
            worker_id=worker_id,
            queues=tuple(queues),
            limit=limit,
            lease_token=self._tokens.new_lease_token(),
            lease_duration=self.lease_duration,
        )
        return await self._repository.claim(request)

    async def heartbeat(self, leases: Sequence[Lease]) -> set[JobId]:
        """Extend the leases; returns the jobs still held (the rest were lost)."""
        if not leases:
            return set()
        return await self._repository.extend_leases(leases, self.lease_duration)

    async def complete(self, completions: Sequence[Completion]) -> set[JobId]:
        """Record finished jobs; returns those accepted (lease still held)."""
        if not completions:
            return set()
        return await self._repository.complete(completions)

    async def complete_one(self, job: Job, result: JsonValue = None) -> bool:
        return job.id in await self.complete([Completion(lease_of(job), result)])

    async def fail(self, job: Job, error: ErrorInfo) -> FailureOutcome:
        """Record a failed attempt: retry with backoff, or DEAD when none are left."""
        failure = self._failure_for(job, error)
        applied = await self._repository.fail([failure])
        return FailureOutcome(
            job.id, failure.target, failure.retry_delay, job.id in applied
        )

    async def give_up(self, job: Job, error: ErrorInfo) -> FailureOutcome:
        """Move a job straight to DEAD, for a failure that no retry can fix."""
        failure = Failure(lease_of(job), JobState.DEAD, timedelta(0), error)
        applied = await self._repository.fail([failure])
        return FailureOutcome(job.id, JobState.DEAD, timedelta(0), job.id in applied)

    async def release(self, jobs: Sequence[Job]) -> set[JobId]:
        if not jobs:
            return set()
        return await self._repository.release([lease_of(job) for job in jobs])

    async def recover_expired(self, limit: int = 100) -> list[Recovery]:
        """Count each expired lease as a failed attempt: FAILED with backoff, or DEAD.

        Safe to run from many workers at once; a job is recovered by one of them.
        """
        expired = await self._repository.find_expired(limit)
        if not expired:
            return []

        failures = [self._failure_for(job, self._expiry_error(job)) for job in expired]
        applied = await self._repository.expire(failures)

        return [
            Recovery(job, failure.target, failure.retry_delay)
            for job, failure in zip(expired, failures, strict=True)
            if job.id in applied
        ]

    def _failure_for(self, job: Job, error: ErrorInfo) -> Failure:
        policy = self._policy_for(job.task)
        decision = policy.decide(job.attempt, job.max_attempts, self._random.random())
        match decision:
            case RetryAt(delay):
                return Failure(lease_of(job), JobState.FAILED, delay, error)
            case GiveUp():
                return Failure(lease_of(job), JobState.DEAD, timedelta(0), error)

    @staticmethod
    def _expiry_error(job: Job) -> ErrorInfo:
        return ErrorInfo(
            type="LeaseExpired",
            message=(
                f"worker {job.worker_id} stopped renewing its lease "
                f"(crashed, hung or lost its connection)"
            ),
        )
