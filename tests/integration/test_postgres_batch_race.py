"""Concurrent batch submissions that share idempotency keys."""

from __future__ import annotations

import asyncio

from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.application.ports import JobQuery
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.job import JobRequest


async def test_crossed_key_orders_create_one_job_each(
    repository: PostgresJobRepository,
) -> None:
    submit = SubmitJobs(repository, default_max_attempts=3)

    for round_number in range(10):
        requests = [
            JobRequest(
                "echo", {"n": i}, idempotency_key=f"round-{round_number}-key-{i}"
            )
            for i in range(200)
        ]
        # The reversed batch locks the same keys in the opposite order, so
        # PostgreSQL may abort one insert as a deadlock, which the store retries.
        forward, backward = await asyncio.gather(
            submit.submit_many(requests), submit.submit_many(requests[::-1])
        )

        forward_ids = [s.job.id for s in forward]
        backward_ids = [s.job.id for s in backward[::-1]]
        assert forward_ids == backward_ids
        assert sum(s.created for s in forward + backward) == 200

    page = await repository.list_jobs(JobQuery(limit=500))
    assert len(page.jobs) == 500
    assert page.next_cursor is not None
