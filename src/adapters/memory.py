"""In-memory job store with the same contract as the PostgreSQL store.

Each method runs to completion without awaiting while it changes state, so
concurrent asyncio tasks never see a half-made change. The lock keeps that
true if a method ever gains an await. Not shared between processes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta

from conveyor.application.ports import (
    ClaimRequest,
    Clock,
    Completion,
    Failure,
    JobPage,
    JobQuery,
    Lease,
    NewJob,
    QueueCounts,
    Submission,
)
from conveyor.domain.errors import IdempotencyConflict
from conveyor.domain.job import (
    Attempt,
    AttemptOutcome,
    ErrorInfo,
    Job,
    JobId,
)
from conveyor.domain.states import CLAIMABLE_STATES, JobState


class InMemoryJobRepository:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._jobs: dict[JobId, Job] = {}
        self._attempts: dict[JobId, list[Attempt]] = {}
        self._by_key: dict[str, JobId] = {}
        self._next_id = 1
        self._lock = asyncio.Lock()

    async def add(self, new_job: NewJob) -> Submission:
        async with self._lock:
            return self._add(new_job)

    async def add_many(self, new_jobs: Sequence[NewJob]) -> list[Submission]:
        async with self._lock:
            for index, new_job in enumerate(new_jobs):
                self._check_key(new_job, f"jobs[{index}].idempotency_key")
            return [self._add(new_job) for new_job in new_jobs]

    def _check_key(self, new_job: NewJob, field: str) -> None:
        """Raise IdempotencyConflict if a different request already used the key."""
        key = new_job.request.idempotency_key
        if key is None or key not in self._by_key:
            return
        existing = self._jobs[self._by_key[key]]
        if existing.fingerprint != new_job.fingerprint:
            raise IdempotencyConflict(key, existing.id, field)

    def _add(self, new_job: NewJob) -> Submission:
        request = new_job.request
        key = request.idempotency_key
        if key is not None and key in self._by_key:
            return Submission(self._with_attempts(self._jobs[self._by_key[key]]), False)

        now = self._clock.now()
        run_at = request.run_at or now + (request.delay or timedelta(0))
        job = Job(
            id=JobId(self._next_id),
            task=request.task,
            queue=request.queue,
            payload=request.payload,
            priority=request.priority,
            state=JobState.PENDING,
            run_at=run_at,
            attempt=0,
            max_attempts=new_job.max_attempts,
            created_at=now,
            updated_at=now,
            idempotency_key=key,
            fingerprint=new_job.fingerprint,
        )
        self._next_id += 1
        self._jobs[job.id] = job
        self._attempts[job.id] = []
        if key is not None:
            self._by_key[key] = job.id
        return Submission(job, True)

    async def get(self, job_id: JobId) -> Job | None:
        job = self._jobs.get(job_id)
        return None if job is None else self._with_attempts(job)

    async def list_jobs(self, query: JobQuery) -> JobPage:
        matches = [
            job
            for job_id, job in sorted(self._jobs.items(), reverse=True)
            if (query.before_id is None or job_id < query.before_id)
            and (not query.states or job.state in query.states)
            and (not query.queues or job.queue in query.queues)
            and (not query.tasks or job.task in query.tasks)
        ]
        page = matches[: query.limit]
        more = len(matches) > query.limit
        return JobPage(
            [self._with_attempts(job) for job in page],
            page[-1].id if more else None,
        )

    async def counts(self) -> list[QueueCounts]:
        per_queue: dict[str, dict[JobState, int]] = {}
        for job in self._jobs.values():
            counts = per_queue.setdefault(job.queue, {})
            counts[job.state] = counts.get(job.state, 0) + 1
        return [QueueCounts(queue, per_queue[queue]) for queue in sorted(per_queue)]

    async def claim(self, request: ClaimRequest) -> list[Job]:
        async with self._lock:
            now = self._clock.now()
            due = [
                job
                for job in self._jobs.values()
                if job.state in CLAIMABLE_STATES
                and job.queue in request.queues
                and job.run_at <= now
            ]
            due.sort(key=lambda job: (-job.priority, job.run_at, job.id))

            claimed = []
            for job in due[: request.limit]:
                moved = job.claimed(
                    request.worker_id, request.lease_token, now, request.lease_duration
                )
                self._jobs[job.id] = moved
                claimed.append(moved)
            return claimed

    async def extend_leases(
        self, leases: Sequence[Lease], duration: timedelta
    ) -> set[JobId]:
        async with self._lock:
            now = self._clock.now()
            extended = set()
            for lease in leases:
                job = self._held(lease)
                if job is not None:
                    self._jobs[job.id] = job.with_lease_extended(now, duration)
                    extended.add(job.id)
            return extended

    async def complete(self, completions: Sequence[Completion]) -> set[JobId]:
        async with self._lock:
            now = self._clock.now()
            done = set()
            for completion in completions:
                job = self._held(completion.lease)
                if job is None:
                    continue
                self._record_attempt(job, AttemptOutcome.COMPLETED, None)
                self._jobs[job.id] = job.completed(now, completion.result)
                done.add(job.id)
            return done

    async def fail(self, failures: Sequence[Failure]) -> set[JobId]:
        async with self._lock:
            return self._apply_failures(
                failures, AttemptOutcome.FAILED, expired_only=False
            )

    async def expire(self, failures: Sequence[Failure]) -> set[JobId]:
        async with self._lock:
            return self._apply_failures(
                failures, AttemptOutcome.LEASE_EXPIRED, expired_only=True
            )

    def _apply_failures(
        self, failures: Sequence[Failure], outcome: AttemptOutcome, expired_only: bool
    ) -> set[JobId]:
        now = self._clock.now()
        applied = set()
        for failure in failures:
            job = self._held(failure.lease, allow_expired=True)
            if job is None:
                continue
            assert job.lease_expires_at is not None
            if expired_only and job.lease_expires_at > now:
                continue
            if not expired_only and job.lease_expires_at <= now:
                # NOTE: an expired lease may already belong to a recovering
                # worker's decision, so a late failure report is rejected
                # exactly like a late completion.
                continue
            self._record_attempt(job, outcome, failure.error)
            self._jobs[job.id] = job.failed(
                failure.target, now, failure.retry_delay, failure.error
            )
            applied.add(job.id)
        return applied

    async def release(self, leases: Sequence[Lease]) -> set[JobId]:
        async with self._lock:
            now = self._clock.now()
            released = set()
            for lease in leases:
                job = self._held(lease)
                if job is None:
                    continue
                self._record_attempt(job, AttemptOutcome.RELEASED, None)
                self._jobs[job.id] = job.released(now)
                released.add(job.id)
            return released

    async def find_expired(self, limit: int) -> list[Job]:
        now = self._clock.now()
        expired = [
            job
            for job in self._jobs.values()
            if job.state is JobState.IN_PROGRESS
            and job.lease_expires_at is not None
            and job.lease_expires_at <= now
        ]
        expired.sort(key=lambda job: (job.lease_expires_at, job.id))
        return expired[:limit]

    async def set_state(
        self, job_id: JobId, expected: JobState, target: JobState
    ) -> Job | None:
        async with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.state is not expected:
                return None
            now = self._clock.now()
            if target is JobState.CANCELLED:
                moved = job.cancelled(now)
            elif target is JobState.PENDING:
                moved = job.requeued(now)
            else:
                raise ValueError(
                    f"set_state moves jobs to CANCELLED or PENDING, not {target}"
                )
            self._jobs[job_id] = moved
            return self._with_attempts(moved)

    def _held(self, lease: Lease, allow_expired: bool = False) -> Job | None:
        """Return the job if it is IN_PROGRESS under this lease and the lease is live."""
        job = self._jobs.get(lease.job_id)
        if job is None or job.state is not JobState.IN_PROGRESS:
            return None
        if job.lease_token != lease.lease_token or job.lease_expires_at is None:
            return None
        if not allow_expired and job.lease_expires_at <= self._clock.now():
            return None
        return job

    def _record_attempt(
        self, job: Job, outcome: AttemptOutcome, error: ErrorInfo | None
    ) -> None:
        assert job.worker_id is not None and job.started_at is not None
        self._attempts[job.id].append(
            Attempt(
                attempt=job.attempt,
                worker_id=job.worker_id,
                started_at=job.started_at,
                finished_at=self._clock.now(),
                outcome=outcome,
                error=error,
            )
        )

    def _with_attempts(self, job: Job) -> Job:
        """Attach finished attempts and, while it runs, the current one."""
        attempts = list(self._attempts[job.id])
        if job.state is JobState.IN_PROGRESS:
            assert job.worker_id is not None and job.started_at is not None
            attempts.append(Attempt(job.attempt, job.worker_id, job.started_at))
        return replace(job, attempts=tuple(attempts))
