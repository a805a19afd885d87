"""Failure scenarios on the in-memory store with a fake clock."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import pytest

from conveyor.adapters.clock import FakeClock, FixedRandom, SequentialTokens
from conveyor.adapters.memory import InMemoryJobRepository
from conveyor.application.executing import ExecuteJobs
from conveyor.application.managing import ManageJobs
from conveyor.application.ports import JobQuery
from conveyor.application.queries import QueryJobs
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.errors import IdempotencyConflict
from conveyor.domain.job import AttemptOutcome, ErrorInfo, JobRequest, WorkerId
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.states import JobState

LEASE = timedelta(seconds=30)
POLICY = RetryPolicy(base_delay=5, factor=2, max_delay=60, jitter=0.5)
RANDOM_VALUE = 0.5
W1, W2, W3 = WorkerId("w1"), WorkerId("w2"), WorkerId("w3")


@dataclass
class World:
    clock: FakeClock
    submit: SubmitJobs
    execute: ExecuteJobs
    manage: ManageJobs
    query: QueryJobs


@pytest.fixture
def world() -> World:
    clock = FakeClock()
    repository = InMemoryJobRepository(clock)
    return World(
        clock=clock,
        submit=SubmitJobs(repository, default_max_attempts=5),
        execute=ExecuteJobs(
            repository,
            SequentialTokens(),
            FixedRandom(RANDOM_VALUE),
            lambda task: POLICY,
            LEASE,
        ),
        manage=ManageJobs(repository),
        query=QueryJobs(repository),
    )


async def test_crashed_worker_job_finished_by_another(world: World) -> None:
    job = (await world.submit.submit(JobRequest("report", max_attempts=3))).job
    [taken] = await world.execute.claim(W1, ["default"], 1)
    # W1 dies here: no heartbeat, no completion.

    world.clock.advance(LEASE - timedelta(seconds=1))
    assert await world.execute.recover_expired() == []
    world.clock.advance(timedelta(seconds=2))
    [recovery] = await world.execute.recover_expired()
    world.clock.advance(recovery.retry_delay)
    [retaken] = await world.execute.claim(W2, ["default"], 1)
    finished = await world.execute.complete_one(retaken, "done")
    late = await world.execute.complete_one(taken, "stale")

    stored = await world.query.get(job.id)
    assert recovery.target is JobState.FAILED
    assert recovery.retry_delay == timedelta(seconds=5 * 0.75)
    assert retaken.attempt == 2
    assert finished
    assert not late
    assert stored.state is JobState.COMPLETED
    assert stored.result == "done"
    assert stored.attempt == 2
    assert [(a.attempt, a.worker_id, a.outcome) for a in stored.attempts] == [
        (1, W1, AttemptOutcome.LEASE_EXPIRED),
        (2, W2, AttemptOutcome.COMPLETED),
    ]
    assert stored.attempts[0].error is not None
    assert stored.attempts[0].error.type == "LeaseExpired"
    assert "w1" in stored.attempts[0].error.message


async def test_always_failing_job_ends_dead(world: World) -> None:
    job = (await world.submit.submit(JobRequest("flaky", max_attempts=4))).job
    waits = []

    for attempt in range(1, 5):
        [claimed] = await world.execute.claim(W1, ["default"], 1)
        assert claimed.attempt == attempt
        outcome = await world.execute.fail(
            claimed, ErrorInfo("IOError", f"failure {attempt}")
        )
        if outcome.target is JobState.DEAD:
            break
        waits.append(outcome.retry_delay.total_seconds())
        # Not a moment before the backoff has elapsed...
        world.clock.advance(outcome.retry_delay - timedelta(milliseconds=1))
        assert await world.execute.claim(W1, ["default"], 1) == []
        # ...and at once when it has.
        world.clock.advance(timedelta(milliseconds=1))

    world.clock.advance(timedelta(days=30))
    leftover = await world.execute.claim(W1, ["default"], 1)

    stored = await world.query.get(job.id)
    assert leftover == []
    assert waits == [POLICY.backoff_seconds(n, RANDOM_VALUE) for n in (1, 2, 3)]
    assert waits == [3.75, 7.5, 15.0]
    assert stored.state is JobState.DEAD
    assert stored.attempt == 4
    assert len(stored.attempts) == 4
    assert [a.error.message for a in stored.attempts if a.error] == [
        "failure 1",
        "failure 2",
        "failure 3",
        "failure 4",
    ]
    assert all(a.outcome is AttemptOutcome.FAILED for a in stored.attempts)
    assert stored.last_error == ErrorInfo("IOError", "failure 4")


async def test_job_that_kills_every_worker_ends_dead(world: World) -> None:
    job = (await world.submit.submit(JobRequest("poison", max_attempts=3))).job
    outcomes = []

    for worker in (W1, W2, W3):
        [claimed] = await world.execute.claim(worker, ["default"], 1)
        assert claimed.worker_id == worker
        world.clock.advance(LEASE + timedelta(seconds=1))
        [recovery] = await world.execute.recover_expired()
        outcomes.append(recovery.target)
        world.clock.advance(recovery.retry_delay)

    world.clock.advance(timedelta(days=1))
    again = await world.execute.claim(W1, ["default"], 1)

    stored = await world.query.get(job.id)
    assert outcomes == [JobState.FAILED, JobState.FAILED, JobState.DEAD]
    assert again == []
    assert stored.state is JobState.DEAD
    assert [a.worker_id for a in stored.attempts] == [W1, W2, W3]
    assert all(a.outcome is AttemptOutcome.LEASE_EXPIRED for a in stored.attempts)


async def test_scheduled_job_waits_and_order_holds(world: World) -> None:
    now = world.clock.now()
    later = (
        await world.submit.submit(
            JobRequest("t", "later", run_at=now + timedelta(minutes=5))
        )
    ).job
    low = (await world.submit.submit(JobRequest("t", "low", priority=1))).job
    high_new = (await world.submit.submit(JobRequest("t", "high-new", priority=9))).job
    high_old = (
        await world.submit.submit(
            JobRequest("t", "high-old", priority=9, run_at=now - timedelta(minutes=1))
        )
    ).job
    low_twin = (await world.submit.submit(JobRequest("t", "low-twin", priority=1))).job

    order = [j.id for j in await world.execute.claim(W1, ["default"], 10)]
    world.clock.advance(timedelta(minutes=4, seconds=59))
    early = await world.execute.claim(W1, ["default"], 10)
    world.clock.advance(timedelta(seconds=1))
    due = await world.execute.claim(W1, ["default"], 10)

    assert order == [high_old.id, high_new.id, low.id, low_twin.id]
    assert early == []
    assert [j.id for j in due] == [later.id]


async def test_concurrent_submissions_create_one_job(world: World) -> None:
    request = JobRequest(
        "charge", {"order": 42, "cents": 1999}, idempotency_key="order-42"
    )

    results = await asyncio.gather(*(world.submit.submit(request) for _ in range(200)))
    with pytest.raises(IdempotencyConflict) as caught:
        await world.submit.submit(
            JobRequest(
                "charge", {"order": 42, "cents": 2999}, idempotency_key="order-42"
            )
        )

    page = await world.query.list_jobs(JobQuery(limit=500))
    ids = {r.job.id for r in results}
    assert len(page.jobs) == 1
    assert len(ids) == 1
    assert sum(r.created for r in results) == 1
    assert caught.value.existing_job_id == ids.pop()
    assert "order-42" in str(caught.value)


async def test_cancel_and_requeue(world: World) -> None:
    pending = (await world.submit.submit(JobRequest("t", "cancel me"))).job
    doomed = (await world.submit.submit(JobRequest("t", "doomed", max_attempts=2))).job

    cancelled = await world.manage.cancel(pending.id)
    for _ in range(2):
        [claimed] = await world.execute.claim(W1, ["default"], 1)
        assert claimed.id == doomed.id
        await world.execute.fail(claimed, ErrorInfo("RuntimeError", "broken"))
        world.clock.advance(timedelta(minutes=1))
    dead = await world.query.get(doomed.id)
    requeued = await world.manage.requeue(doomed.id)
    [rerun] = await world.execute.claim(W2, ["default"], 1)
    await world.execute.complete_one(rerun, "fixed")

    final = await world.query.get(doomed.id)
    assert cancelled.state is JobState.CANCELLED
    assert (await world.query.get(pending.id)).state is JobState.CANCELLED
    assert dead.state is JobState.DEAD
    assert requeued.state is JobState.PENDING
    assert requeued.attempt == 0
    assert requeued.attempts_left == 2
    assert rerun.attempt == 1
    assert final.state is JobState.COMPLETED
    assert [(a.attempt, a.outcome) for a in final.attempts] == [
        (1, AttemptOutcome.FAILED),
        (2, AttemptOutcome.FAILED),
        (1, AttemptOutcome.COMPLETED),
    ]
