"""Contract suite for JobRepository: every store must pass it unchanged.

A test module imports these tests and provides a `harness` fixture
(see harness.py). Time moves only through harness.advance.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest

from conveyor.adapters.clock import FixedRandom, UuidTokens
from conveyor.application.executing import ExecuteJobs
from conveyor.application.managing import ManageJobs
from conveyor.application.ports import Completion, JobQuery, Lease
from conveyor.application.queries import QueryJobs
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.errors import IdempotencyConflict, IllegalTransition
from conveyor.domain.job import (
    AttemptOutcome,
    ErrorInfo,
    JobId,
    JobRequest,
    LeaseToken,
    WorkerId,
)
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.states import JobState
from tests.contract.harness import StoreHarness

LEASE = timedelta(seconds=30)
POLICY = RetryPolicy(base_delay=10, factor=2, max_delay=100, jitter=0)
W1 = WorkerId("worker-1")
W2 = WorkerId("worker-2")
BOOM = ErrorInfo("ValueError", "boom", "Traceback ...")


class Services:
    def __init__(self, harness: StoreHarness) -> None:
        repository = harness.repository
        self.submit = SubmitJobs(repository, default_max_attempts=3)
        self.execute = ExecuteJobs(
            repository, UuidTokens(), FixedRandom(0.0), lambda task: POLICY, LEASE
        )
        self.manage = ManageJobs(repository)
        self.query = QueryJobs(repository)


@pytest.fixture
def services(harness: StoreHarness) -> Services:
    return Services(harness)


async def test_submit_stores_pending_job(
    services: Services, harness: StoreHarness
) -> None:
    now = await harness.now()

    submission = await services.submit.submit(
        JobRequest(
            "echo", {"text": "hi", "n": [1, 2.5, None, True]}, queue="mail", priority=3
        )
    )

    job = submission.job
    assert submission.created
    assert job.state is JobState.PENDING
    assert job.task == "echo"
    assert job.queue == "mail"
    assert job.priority == 3
    assert job.payload == {"text": "hi", "n": [1, 2.5, None, True]}
    assert job.attempt == 0
    assert job.max_attempts == 3
    assert abs(job.run_at - now) < timedelta(seconds=5)
    stored = await services.query.get(job.id)
    assert stored.payload == job.payload
    assert stored.attempts == ()


async def test_delay_sets_due_time(services: Services, harness: StoreHarness) -> None:
    now = await harness.now()

    job = (
        await services.submit.submit(JobRequest("echo", delay=timedelta(seconds=60)))
    ).job

    assert timedelta(seconds=59) < job.run_at - now < timedelta(seconds=65)


async def test_repeat_key_returns_existing_job(services: Services) -> None:
    request = JobRequest("echo", {"a": 1}, idempotency_key="order-7")

    first = await services.submit.submit(request)
    second = await services.submit.submit(request)

    assert first.created
    assert not second.created
    assert second.job.id == first.job.id


async def test_reused_key_with_other_payload_conflicts(services: Services) -> None:
    await services.submit.submit(JobRequest("echo", {"a": 1}, idempotency_key="k"))

    with pytest.raises(IdempotencyConflict) as caught:
        await services.submit.submit(JobRequest("echo", {"a": 2}, idempotency_key="k"))

    assert "different request" in str(caught.value)


async def test_concurrent_repeats_create_one_job(
    services: Services, harness: StoreHarness
) -> None:
    request = JobRequest("echo", {"a": 1}, idempotency_key="same")

    results = await asyncio.gather(
        *(services.submit.submit(request) for _ in range(50))
    )

    assert len({r.job.id for r in results}) == 1
    assert sum(r.created for r in results) == 1
    page = await services.query.list_jobs(JobQuery(limit=100))
    assert len(page.jobs) == 1


async def test_add_many_keeps_order_and_keys(services: Services) -> None:
    existing = (
        await services.submit.submit(JobRequest("echo", 0, idempotency_key="k0"))
    ).job

    results = await services.submit.submit_many(
        [
            JobRequest("echo", 1),
            JobRequest("echo", 0, idempotency_key="k0"),
            JobRequest("echo", 2, idempotency_key="k2"),
        ]
    )

    assert [r.created for r in results] == [True, False, True]
    assert [r.job.payload for r in results] == [1, 0, 2]
    assert results[1].job.id == existing.id


async def test_batch_with_reused_key_stores_nothing(services: Services) -> None:
    existing = (
        await services.submit.submit(JobRequest("echo", "first", idempotency_key="k"))
    ).job

    with pytest.raises(IdempotencyConflict) as caught:
        await services.submit.submit_many(
            [
                JobRequest("echo", 1),
                JobRequest("echo", 2, idempotency_key="new"),
                JobRequest("echo", "changed", idempotency_key="k"),
            ]
        )

    assert caught.value.field == "jobs[2].idempotency_key"
    assert caught.value.existing_job_id == existing.id
    page = await services.query.list_jobs(JobQuery(limit=100))
    assert [job.id for job in page.jobs] == [existing.id]


async def test_claim_moves_job_in_progress(
    services: Services, harness: StoreHarness
) -> None:
    job = (await services.submit.submit(JobRequest("echo"))).job
    now = await harness.now()

    [claimed] = await services.execute.claim(W1, ["default"], 10)

    assert claimed.id == job.id
    assert claimed.state is JobState.IN_PROGRESS
    assert claimed.attempt == 1
    assert claimed.worker_id == W1
    assert claimed.lease_token is not None
    assert claimed.lease_expires_at is not None
    assert (
        LEASE - timedelta(seconds=5)
        < claimed.lease_expires_at - now
        <= LEASE + timedelta(seconds=5)
    )
    stored = await services.query.get(job.id)
    assert [a.worker_id for a in stored.attempts] == [W1]
    assert stored.attempts[0].outcome is None


async def test_claim_respects_queues_and_limit(services: Services) -> None:
    for queue in ("a", "a", "a", "b"):
        await services.submit.submit(JobRequest("echo", queue=queue))

    from_a = await services.execute.claim(W1, ["a"], 2)
    from_c = await services.execute.claim(W1, ["c"], 10)
    rest = await services.execute.claim(W1, ["a", "b"], 10)

    assert len(from_a) == 2
    assert from_c == []
    assert sorted(j.queue for j in rest) == ["a", "b"]


async def test_claimed_job_is_not_claimed_again(services: Services) -> None:
    await services.submit.submit(JobRequest("echo"))

    first = await services.execute.claim(W1, ["default"], 10)
    second = await services.execute.claim(W2, ["default"], 10)

    assert len(first) == 1
    assert second == []


async def test_future_job_waits_until_due(
    services: Services, harness: StoreHarness
) -> None:
    later = (
        await services.submit.submit(JobRequest("echo", delay=timedelta(seconds=60)))
    ).job

    assert await services.execute.claim(W1, ["default"], 10) == []
    harness.advance(61)
    [claimed] = await services.execute.claim(W1, ["default"], 10)

    assert claimed.id == later.id


async def test_claim_order_priority_due_time_id(
    services: Services, harness: StoreHarness
) -> None:
    now = await harness.now()
    low = (await services.submit.submit(JobRequest("echo", "low", priority=0))).job
    high_late = (
        await services.submit.submit(
            JobRequest(
                "echo", "high-late", priority=5, run_at=now - timedelta(seconds=1)
            )
        )
    ).job
    high_early = (
        await services.submit.submit(
            JobRequest(
                "echo", "high-early", priority=5, run_at=now - timedelta(seconds=30)
            )
        )
    ).job
    low_second = (
        await services.submit.submit(JobRequest("echo", "low-2", priority=0))
    ).job
    harness.advance(1)

    claimed = await services.execute.claim(W1, ["default"], 10)

    assert [j.id for j in claimed][:2] == [high_early.id, high_late.id]
    assert [j.id for j in claimed][2:] == [low.id, low_second.id]


async def test_same_priority_and_due_time_by_id(
    services: Services, harness: StoreHarness
) -> None:
    run_at = await harness.now()
    ids = [
        (await services.submit.submit(JobRequest("echo", i, run_at=run_at))).job.id
        for i in range(5)
    ]

    claimed = [
        (await services.execute.claim(W1, ["default"], 1))[0].id for _ in range(5)
    ]

    assert claimed == ids


async def test_complete_records_result_and_attempt(services: Services) -> None:
    await services.submit.submit(JobRequest("echo", {"x": 1}))
    [job] = await services.execute.claim(W1, ["default"], 1)

    accepted = await services.execute.complete_one(job, {"echoed": {"x": 1}})

    stored = await services.query.get(job.id)
    assert accepted
    assert stored.state is JobState.COMPLETED
    assert stored.result == {"echoed": {"x": 1}}
    assert stored.finished_at is not None
    assert stored.lease_token is None
    assert len(stored.attempts) == 1
    assert stored.attempts[0].outcome is AttemptOutcome.COMPLETED
    assert stored.attempts[0].worker_id == W1


async def test_complete_with_wrong_token_rejected(services: Services) -> None:
    await services.submit.submit(JobRequest("echo"))
    [job] = await services.execute.claim(W1, ["default"], 1)
    forged = Lease(job.id, LeaseToken(uuid.uuid4()))

    accepted = await services.execute.complete([Completion(forged)])

    assert accepted == set()
    assert (await services.query.get(job.id)).state is JobState.IN_PROGRESS


async def test_complete_many_in_one_call(services: Services) -> None:
    for i in range(20):
        await services.submit.submit(JobRequest("echo", i))
    jobs = await services.execute.claim(W1, ["default"], 20)

    accepted = await services.execute.complete(
        [
            Completion(Lease(j.id, j.lease_token), j.payload)
            for j in jobs
            if j.lease_token
        ]
    )

    assert accepted == {j.id for j in jobs}
    counts = await services.query.counts()
    assert [(c.queue, c.counts) for c in counts] == [
        ("default", {JobState.COMPLETED: 20})
    ]


async def test_failure_schedules_retry_with_backoff(
    services: Services, harness: StoreHarness
) -> None:
    await services.submit.submit(JobRequest("echo"))
    [job] = await services.execute.claim(W1, ["default"], 1)
    now = await harness.now()

    outcome = await services.execute.fail(job, BOOM)

    stored = await services.query.get(job.id)
    assert outcome.applied
    assert outcome.target is JobState.FAILED
    assert stored.state is JobState.FAILED
    assert timedelta(seconds=9) < stored.run_at - now < timedelta(seconds=15)
    assert stored.last_error == BOOM
    assert stored.attempts[0].outcome is AttemptOutcome.FAILED
    assert stored.attempts[0].error == BOOM
    assert await services.execute.claim(W1, ["default"], 1) == []
    harness.advance(11)
    [again] = await services.execute.claim(W2, ["default"], 1)
    assert again.attempt == 2


async def test_last_failure_moves_to_dead(services: Services) -> None:
    await services.submit.submit(JobRequest("echo", max_attempts=1))
    [job] = await services.execute.claim(W1, ["default"], 1)

    outcome = await services.execute.fail(job, BOOM)

    stored = await services.query.get(job.id)
    assert outcome.target is JobState.DEAD
    assert stored.state is JobState.DEAD
    assert stored.finished_at is not None


async def test_give_up_moves_to_dead_at_once(services: Services) -> None:
    await services.submit.submit(JobRequest("nope", max_attempts=5))
    [job] = await services.execute.claim(W1, ["default"], 1)

    await services.execute.give_up(
        job, ErrorInfo("UnknownTask", "no task named 'nope'")
    )

    stored = await services.query.get(job.id)
    assert stored.state is JobState.DEAD
    assert stored.last_error is not None
    assert stored.last_error.type == "UnknownTask"


async def test_heartbeat_extends_lease(
    services: Services, harness: StoreHarness
) -> None:
    await services.submit.submit(JobRequest("echo"))
    [job] = await services.execute.claim(W1, ["default"], 1)
    lease = Lease(job.id, job.lease_token)  # type: ignore[arg-type]

    harness.advance(20)
    held = await services.execute.heartbeat([lease])
    harness.advance(20)

    assert held == {job.id}
    assert await services.execute.recover_expired() == []
    assert await services.execute.complete_one(job)


async def test_expired_lease_is_recovered(
    services: Services, harness: StoreHarness
) -> None:
    await services.submit.submit(JobRequest("echo", max_attempts=3))
    [job] = await services.execute.claim(W1, ["default"], 1)
    harness.advance(31)

    recovered = await services.execute.recover_expired()

    assert [(r.job.id, r.target) for r in recovered] == [(job.id, JobState.FAILED)]
    stored = await services.query.get(job.id)
    assert stored.state is JobState.FAILED
    assert stored.attempts[0].outcome is AttemptOutcome.LEASE_EXPIRED
    assert stored.attempts[0].error is not None
    assert stored.attempts[0].error.type == "LeaseExpired"


async def test_late_completion_after_recovery_rejected(
    services: Services, harness: StoreHarness
) -> None:
    await services.submit.submit(JobRequest("echo", max_attempts=3))
    [first] = await services.execute.claim(W1, ["default"], 1)
    harness.advance(31)
    await services.execute.recover_expired()
    harness.advance(11)
    [second] = await services.execute.claim(W2, ["default"], 1)

    late = await services.execute.complete_one(first, "late")
    late_failure = await services.execute.fail(first, BOOM)
    late_heartbeat = await services.execute.heartbeat(
        [Lease(first.id, first.lease_token)]
    )  # type: ignore[arg-type]
    on_time = await services.execute.complete_one(second, "on time")

    stored = await services.query.get(first.id)
    assert not late
    assert not late_failure.applied
    assert late_heartbeat == set()
    assert on_time
    assert stored.state is JobState.COMPLETED
    assert stored.result == "on time"
    assert [(a.worker_id, a.outcome) for a in stored.attempts] == [
        (W1, AttemptOutcome.LEASE_EXPIRED),
        (W2, AttemptOutcome.COMPLETED),
    ]


async def test_completion_after_expiry_before_recovery_rejected(
    services: Services, harness: StoreHarness
) -> None:
    await services.submit.submit(JobRequest("echo"))
    [job] = await services.execute.claim(W1, ["default"], 1)
    harness.advance(31)

    assert not await services.execute.complete_one(job)
    assert (await services.query.get(job.id)).state is JobState.IN_PROGRESS


async def test_recovery_of_last_attempt_is_dead(
    services: Services, harness: StoreHarness
) -> None:
    await services.submit.submit(JobRequest("echo", max_attempts=1))
    [job] = await services.execute.claim(W1, ["default"], 1)
    harness.advance(31)

    [recovery] = await services.execute.recover_expired()

    assert recovery.target is JobState.DEAD
    assert (await services.query.get(job.id)).state is JobState.DEAD


async def test_concurrent_recovery_applies_once(
    services: Services, harness: StoreHarness
) -> None:
    for _ in range(10):
        await services.submit.submit(JobRequest("echo", max_attempts=3))
    await services.execute.claim(W1, ["default"], 10)
    harness.advance(31)

    results = await asyncio.gather(
        *(services.execute.recover_expired() for _ in range(4))
    )

    recovered_ids = [r.job.id for result in results for r in result]
    assert len(recovered_ids) == 10
    assert len(set(recovered_ids)) == 10
    for job_id in set(recovered_ids):
        job = await services.query.get(job_id)
        assert len(job.attempts) == 1


async def test_release_returns_job_to_pending(services: Services) -> None:
    await services.submit.submit(JobRequest("echo"))
    [job] = await services.execute.claim(W1, ["default"], 1)

    released = await services.execute.release([job])

    stored = await services.query.get(job.id)
    assert released == {job.id}
    assert stored.state is JobState.PENDING
    assert stored.attempt == 0
    assert stored.attempts[0].outcome is AttemptOutcome.RELEASED
    [again] = await services.execute.claim(W2, ["default"], 1)
    assert again.attempt == 1


async def test_cancel_pending_job(services: Services) -> None:
    job = (await services.submit.submit(JobRequest("echo"))).job

    cancelled = await services.manage.cancel(job.id)

    assert cancelled.state is JobState.CANCELLED
    assert await services.execute.claim(W1, ["default"], 1) == []


async def test_cancel_running_job_is_illegal(services: Services) -> None:
    await services.submit.submit(JobRequest("echo"))
    [job] = await services.execute.claim(W1, ["default"], 1)

    with pytest.raises(IllegalTransition):
        await services.manage.cancel(job.id)


async def test_requeue_dead_job_keeps_history(services: Services) -> None:
    await services.submit.submit(JobRequest("echo", max_attempts=1))
    [job] = await services.execute.claim(W1, ["default"], 1)
    await services.execute.fail(job, BOOM)

    requeued = await services.manage.requeue(job.id)
    [again] = await services.execute.claim(W2, ["default"], 1)
    await services.execute.complete_one(again)

    stored = await services.query.get(job.id)
    assert requeued.state is JobState.PENDING
    assert requeued.attempt == 0
    assert again.attempt == 1
    assert stored.state is JobState.COMPLETED
    assert [a.outcome for a in stored.attempts] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.COMPLETED,
    ]


async def test_requeue_completed_job_is_illegal(services: Services) -> None:
    await services.submit.submit(JobRequest("echo"))
    [job] = await services.execute.claim(W1, ["default"], 1)
    await services.execute.complete_one(job)

    with pytest.raises(IllegalTransition):
        await services.manage.requeue(job.id)


async def test_list_filters_and_pages(services: Services) -> None:
    for i in range(7):
        await services.submit.submit(
            JobRequest("echo" if i % 2 else "sleep", i, queue="q")
        )
    await services.submit.submit(JobRequest("echo", "other", queue="other"))

    first = await services.query.list_jobs(JobQuery(queues=frozenset({"q"}), limit=3))
    second = await services.query.list_jobs(
        JobQuery(queues=frozenset({"q"}), limit=3, before_id=first.next_cursor)
    )
    third = await services.query.list_jobs(
        JobQuery(queues=frozenset({"q"}), limit=3, before_id=second.next_cursor)
    )
    echoes = await services.query.list_jobs(
        JobQuery(tasks=frozenset({"echo"}), limit=50)
    )
    pending = await services.query.list_jobs(
        JobQuery(states=frozenset({JobState.PENDING}), limit=50)
    )

    assert [j.payload for j in first.jobs] == [6, 5, 4]
    assert [j.payload for j in second.jobs] == [3, 2, 1]
    assert [j.payload for j in third.jobs] == [0]
    assert third.next_cursor is None
    assert [j.payload for j in echoes.jobs] == ["other", 5, 3, 1]
    assert len(pending.jobs) == 8


async def test_counts_per_queue_and_state(services: Services) -> None:
    for queue in ("a", "a", "b"):
        await services.submit.submit(JobRequest("echo", queue=queue))
    await services.execute.claim(W1, ["a"], 1)

    counts = {c.queue: c.counts for c in await services.query.counts()}

    assert counts == {
        "a": {JobState.PENDING: 1, JobState.IN_PROGRESS: 1},
        "b": {JobState.PENDING: 1},
    }


async def test_get_unknown_job_is_none(harness: StoreHarness) -> None:
    assert await harness.repository.get(JobId(987654)) is None


async def test_set_state_with_stale_expectation(
    services: Services, harness: StoreHarness
) -> None:
    job = (await services.submit.submit(JobRequest("echo"))).job

    stale = await harness.repository.set_state(
        job.id, JobState.FAILED, JobState.CANCELLED
    )

    assert stale is None
    assert (await services.query.get(job.id)).state is JobState.PENDING
