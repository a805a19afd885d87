"""Use-case rules that sit outside the repository contract."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.adapters.clock import FakeClock, FixedRandom, SequentialTokens
from conveyor.adapters.memory import InMemoryJobRepository
from conveyor.application.executing import ExecuteJobs, lease_of
from conveyor.application.managing import ManageJobs
from conveyor.application.ports import JobQuery
from conveyor.application.queries import MAX_PAGE_SIZE, QueryJobs
from conveyor.application.submitting import MAX_BATCH_SIZE, SubmitJobs
from conveyor.domain.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidJobRequest,
    JobNotFound,
    LeaseLost,
)
from conveyor.domain.job import Job, JobId, JobRequest, WorkerId
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.states import JobState


@pytest.fixture
def repository() -> InMemoryJobRepository:
    return InMemoryJobRepository(FakeClock())


def make_execute(repository: InMemoryJobRepository) -> ExecuteJobs:
    return ExecuteJobs(
        repository,
        SequentialTokens(),
        FixedRandom(),
        lambda task: RetryPolicy(),
        timedelta(seconds=30),
    )


async def test_default_max_attempts_applies(repository: InMemoryJobRepository) -> None:
    submit = SubmitJobs(repository, default_max_attempts=7)

    job = (await submit.submit(JobRequest("t"))).job

    assert job.max_attempts == 7


@pytest.mark.parametrize("value", [0, 1001])
def test_default_max_attempts_checked(
    repository: InMemoryJobRepository, value: int
) -> None:
    with pytest.raises(ValueError, match="default_max_attempts"):
        SubmitJobs(repository, default_max_attempts=value)


async def test_batch_with_duplicate_key_rejected(
    repository: InMemoryJobRepository,
) -> None:
    submit = SubmitJobs(repository, default_max_attempts=3)

    with pytest.raises(InvalidJobRequest) as caught:
        await submit.submit_many(
            [JobRequest("t", idempotency_key="a"), JobRequest("t", idempotency_key="a")]
        )

    assert caught.value.field == "jobs[1].idempotency_key"
    assert (await QueryJobs(repository).list_jobs(JobQuery())).jobs == []


async def test_oversized_batch_rejected(repository: InMemoryJobRepository) -> None:
    submit = SubmitJobs(repository, default_max_attempts=3)

    with pytest.raises(InvalidJobRequest) as caught:
        await submit.submit_many([JobRequest("t")] * (MAX_BATCH_SIZE + 1))

    assert caught.value.field == "jobs"


async def test_missing_job_raises_not_found(repository: InMemoryJobRepository) -> None:
    with pytest.raises(JobNotFound, match="job 404 not found"):
        await QueryJobs(repository).get(JobId(404))
    with pytest.raises(JobNotFound):
        await ManageJobs(repository).cancel(JobId(404))


@pytest.mark.parametrize("limit", [0, MAX_PAGE_SIZE + 1])
async def test_page_size_checked(repository: InMemoryJobRepository, limit: int) -> None:
    with pytest.raises(InvalidJobRequest) as caught:
        await QueryJobs(repository).list_jobs(JobQuery(limit=limit))

    assert caught.value.field == "limit"


async def test_empty_batches_skip_store(repository: InMemoryJobRepository) -> None:
    execute = make_execute(repository)

    assert await execute.claim(WorkerId("w"), ["default"], 0) == []
    assert await execute.heartbeat([]) == set()
    assert await execute.complete([]) == set()
    assert await execute.release([]) == set()


async def test_lease_of_unleased_job_raises(repository: InMemoryJobRepository) -> None:
    job = (await SubmitJobs(repository, 3).submit(JobRequest("t"))).job

    with pytest.raises(ValueError, match="has no lease"):
        lease_of(job)


def test_lease_duration_must_be_positive(repository: InMemoryJobRepository) -> None:
    with pytest.raises(ValueError, match="lease_duration"):
        ExecuteJobs(
            repository,
            SequentialTokens(),
            FixedRandom(),
            lambda t: RetryPolicy(),
            timedelta(0),
        )


async def test_cancel_race_rereads_job(repository: InMemoryJobRepository) -> None:
    job = (await SubmitJobs(repository, 3).submit(JobRequest("t"))).job
    execute = make_execute(repository)
    original = repository.set_state
    calls: list[JobState] = []

    async def claimed_meanwhile(
        job_id: JobId, expected: JobState, target: JobState
    ) -> Job | None:
        calls.append(expected)
        if len(calls) == 1:
            # A worker claims the job between the operator's read and write.
            await execute.claim(WorkerId("w"), ["default"], 1)
        return await original(job_id, expected, target)

    repository.set_state = claimed_meanwhile  # type: ignore[method-assign]

    with pytest.raises(IllegalTransition) as caught:
        await ManageJobs(repository).cancel(job.id)

    assert calls == [JobState.PENDING]
    assert caught.value.current is JobState.IN_PROGRESS


async def test_endless_race_gives_up(repository: InMemoryJobRepository) -> None:
    job = (await SubmitJobs(repository, 3).submit(JobRequest("t"))).job
    calls = 0

    async def always_stale(job_id: JobId, expected: JobState, target: JobState) -> None:
        nonlocal calls
        calls += 1

    repository.set_state = always_stale  # type: ignore[method-assign,assignment]

    with pytest.raises(IllegalTransition):
        await ManageJobs(repository).cancel(job.id)

    assert calls == 5


def test_conflict_error_names_key_and_job() -> None:
    error = IdempotencyConflict("order-1", JobId(12))

    assert "'order-1'" in str(error)
    assert "job 12" in str(error)


def test_lease_lost_error_names_job() -> None:
    assert str(LeaseLost(JobId(3))).startswith("job 3: lease expired")
