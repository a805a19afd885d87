"""Use cases of an operator: cancel and requeue."""

from __future__ import annotations

from conveyor.application.ports import JobRepository
from conveyor.domain.errors import IllegalTransition, JobNotFound
from conveyor.domain.job import Job, JobId
from conveyor.domain.states import JobState, check_transition

# A job that changes state between our read and our write is read again.
# After this many rounds something keeps moving it, so the move fails.
_MAX_ROUNDS = 5


class ManageJobs:
    def __init__(self, repository: JobRepository) -> None:
        self._repository = repository

    async def cancel(self, job_id: JobId) -> Job:
        """Cancel a PENDING or FAILED job; a running job cannot be cancelled."""
        return await self._move(job_id, JobState.CANCELLED)

    async def requeue(self, job_id: JobId) -> Job:
        """Send a DEAD, FAILED or CANCELLED job back to PENDING with a fresh budget."""
        return await self._move(job_id, JobState.PENDING)

    async def _move(self, job_id: JobId, target: JobState) -> Job:
        job = await self._load(job_id)
        for _ in range(_MAX_ROUNDS):
            # IN_PROGRESS -> PENDING is the worker's release, not an operator act.
            if job.state is JobState.IN_PROGRESS:
                raise IllegalTransition(job.id, job.state, target)
            check_transition(job.id, job.state, target)

            moved = await self._repository.set_state(job.id, job.state, target)
            if moved is not None:
                return moved
            job = await self._load(job_id)
        raise IllegalTransition(job.id, job.state, target)

    async def _load(self, job_id: JobId) -> Job:
        job = await self._repository.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job
