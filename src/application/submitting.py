"""Use case: submit jobs, idempotently when a key is given."""

from __future__ import annotations

from collections.abc import Sequence

from conveyor.application.ports import JobRepository, NewJob, Submission
from conveyor.domain.errors import IdempotencyConflict, InvalidJobRequest
from conveyor.domain.job import MAX_ATTEMPTS_LIMIT, JobRequest

MAX_BATCH_SIZE = 10_000


class SubmitJobs:
    def __init__(self, repository: JobRepository, default_max_attempts: int) -> None:
        if not 1 <= default_max_attempts <= MAX_ATTEMPTS_LIMIT:
            raise ValueError(
                f"default_max_attempts must be within [1, {MAX_ATTEMPTS_LIMIT}], "
                f"got {default_max_attempts}"
            )
        self._repository = repository
        self._default_max_attempts = default_max_attempts

    async def submit(self, request: JobRequest) -> Submission:
        """Store a new job, or return the job that already has the same key.

        Raises IdempotencyConflict when the key belongs to a different request.
        """
        submission = await self._repository.add(self._prepare(request))
        self._check_repeat(request, submission)
        return submission

    async def submit_many(self, requests: Sequence[JobRequest]) -> list[Submission]:
        """Store many jobs in one round trip; each idempotency key acts per item.

        A key already used by a different request raises IdempotencyConflict,
        and then no job of the batch is stored, so the client may send the batch
        again with the key fixed.
        """
        if len(requests) > MAX_BATCH_SIZE:
            raise InvalidJobRequest(
                "jobs", f"holds {len(requests)} jobs; the maximum is {MAX_BATCH_SIZE}"
            )
        self._check_unique_keys(requests)

        default = self._default_max_attempts
        submissions = await self._repository.add_many(
            [
                # _prepare, written out: a method call per job costs more.
                NewJob(
                    r,
                    r.max_attempts or default,
                    None if r.idempotency_key is None else r.fingerprint(),
                )
                for r in requests
            ]
        )

        for request, submission in zip(requests, submissions, strict=True):
            if not submission.created:
                self._check_repeat(request, submission)
        return submissions

    def _prepare(self, request: JobRequest) -> NewJob:
        max_attempts = request.max_attempts or self._default_max_attempts
        fingerprint = None if request.idempotency_key is None else request.fingerprint()
        return NewJob(request, max_attempts, fingerprint)

    @staticmethod
    def _check_repeat(request: JobRequest, submission: Submission) -> None:
        if submission.created or request.idempotency_key is None:
            return
        if submission.job.fingerprint != request.fingerprint():
            raise IdempotencyConflict(request.idempotency_key, submission.job.id)

    @staticmethod
    def _check_unique_keys(requests: Sequence[JobRequest]) -> None:
        seen: set[str] = set()
        for index, request in enumerate(requests):
            key = request.idempotency_key
            if key is None:
                continue
            if key in seen:
                raise InvalidJobRequest(
                    f"jobs[{index}].idempotency_key",
                    f"{key!r} appears more than once in the batch",
                )
            seen.add(key)
