"""SubmitBatcher joins waiting unkeyed submissions and keeps keyed ones apart."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from conveyor.adapters.clock import FakeClock
from conveyor.adapters.memory import InMemoryJobRepository
from conveyor.application.ports import NewJob, Submission
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.errors import IdempotencyConflict, StoreUnavailable
from conveyor.domain.job import JobRequest
from conveyor.entrypoints.api.batching import SubmitBatcher


class CountingRepository(InMemoryJobRepository):
    """The memory store, recording how many jobs each store call carried."""

    def __init__(self) -> None:
        super().__init__(FakeClock())
        self.calls: list[int] = []
        self.failure: Exception | None = None

    async def add(self, new_job: NewJob) -> Submission:
        [submission] = await self.add_many([new_job])
        return submission

    async def add_many(self, new_jobs: Sequence[NewJob]) -> list[Submission]:
        self.calls.append(len(new_jobs))
        # Yield once, as a database round trip would.
        await asyncio.sleep(0)
        if self.failure is not None:
            raise self.failure
        return await super().add_many(new_jobs)


def batcher_on(repository: CountingRepository, max_calls: int = 1) -> SubmitBatcher:
    return SubmitBatcher(SubmitJobs(repository, default_max_attempts=5), max_calls)


async def test_waiting_submissions_share_one_call() -> None:
    repository = CountingRepository()
    batcher = batcher_on(repository)

    submissions = await asyncio.gather(
        *(batcher.submit(JobRequest(task=f"t{n}")) for n in range(5))
    )

    assert [s.job.task for s in submissions] == ["t0", "t1", "t2", "t3", "t4"]
    assert all(s.created for s in submissions)
    assert len({s.job.id for s in submissions}) == 5
    assert repository.calls == [5]


async def test_calls_never_exceed_limit() -> None:
    repository = CountingRepository()
    batcher = batcher_on(repository, max_calls=2)

    await asyncio.gather(*(batcher.submit(JobRequest(task="t")) for _ in range(7)))

    assert sum(repository.calls) == 7
    assert len(repository.calls) <= 2


async def test_keyed_submissions_go_one_by_one() -> None:
    repository = CountingRepository()
    batcher = batcher_on(repository)
    keyed = JobRequest(task="t", idempotency_key="k")

    first, repeat = await asyncio.gather(batcher.submit(keyed), batcher.submit(keyed))

    assert repository.calls == [1, 1]
    assert first.job.id == repeat.job.id
    assert first.created != repeat.created


async def test_conflicting_key_raises() -> None:
    batcher = batcher_on(CountingRepository())
    await batcher.submit(JobRequest(task="t", idempotency_key="k"))

    with pytest.raises(IdempotencyConflict):
        await batcher.submit(JobRequest(task="other", idempotency_key="k"))


async def test_store_error_reaches_every_request() -> None:
    repository = CountingRepository()
    repository.failure = StoreUnavailable("database down")
    batcher = batcher_on(repository)

    results = await asyncio.gather(
        *(batcher.submit(JobRequest(task="t")) for _ in range(3)),
        return_exceptions=True,
    )

    assert all(isinstance(r, StoreUnavailable) for r in results)
    assert repository.calls == [3]


async def test_cancelled_request_leaves_others_served() -> None:
    repository = CountingRepository()
    batcher = batcher_on(repository)

    leaving = asyncio.ensure_future(batcher.submit(JobRequest(task="gone")))
    staying = asyncio.ensure_future(batcher.submit(JobRequest(task="kept")))
    await asyncio.sleep(0)
    leaving.cancel()

    submission = await staying

    assert submission.job.task == "kept"
    assert leaving.cancelled()


def test_limit_below_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_calls"):
        batcher_on(CountingRepository(), max_calls=0)
