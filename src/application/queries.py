"""Read-only use cases: one job, a filtered page of jobs, counts per queue."""

from __future__ import annotations

from conveyor.application.ports import JobPage, JobQuery, JobRepository, QueueCounts
from conveyor.domain.errors import InvalidJobRequest, JobNotFound
from conveyor.domain.job import Job, JobId

MAX_PAGE_SIZE = 500


class QueryJobs:
    def __init__(self, repository: JobRepository) -> None:
        self._repository = repository

    async def get(self, job_id: JobId) -> Job:
        job = await self._repository.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list_jobs(self, query: JobQuery) -> JobPage:
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise InvalidJobRequest(
                "limit", f"{query.limit} is out of range [1, {MAX_PAGE_SIZE}]"
            )
        return await self._repository.list_jobs(query)

    async def counts(self) -> list[QueueCounts]:
        return await self._repository.counts()
