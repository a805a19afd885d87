"""Behaviour of the PostgreSQL store beyond the shared contract."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.adapters.postgres.rows import REPLACEMENT_CHARACTER
from conveyor.adapters.postgres.tables import job_attempts, jobs
from conveyor.application.executing import lease_of
from conveyor.application.ports import (
    ClaimRequest,
    Completion,
    Failure,
    JobQuery,
    Lease,
    NewJob,
)
from conveyor.domain.errors import IllegalTransition, InvalidJobRequest
from conveyor.domain.job import (
    AttemptOutcome,
    ErrorInfo,
    Job,
    JobId,
    JobRequest,
    LeaseToken,
    WorkerId,
)
from conveyor.domain.states import JobState

LEASE = timedelta(seconds=30)
WORKER = WorkerId("worker-1")


def new_job(payload: Any = None, **fields: Any) -> NewJob:
    return NewJob(JobRequest("echo", payload, **fields), 3, "")


async def claim(
    repository: PostgresJobRepository, queues: tuple[str, ...], limit: int
) -> list[Job]:
    return await repository.claim(
        ClaimRequest(WORKER, queues, limit, LeaseToken(uuid.uuid4()), LEASE)
    )


async def test_add_many_ids_follow_input_order(
    repository: PostgresJobRepository,
) -> None:
    submissions = await repository.add_many(
        [
            new_job("a"),
            new_job("b", idempotency_key="k-b"),
            new_job("c"),
            new_job("d", idempotency_key="k-d"),
        ]
    )

    ids = [submission.job.id for submission in submissions]
    assert [submission.job.payload for submission in submissions] == list("abcd")
    assert ids == sorted(ids)


async def test_payload_round_trips_unicode_and_big_numbers(
    repository: PostgresJobRepository,
) -> None:
    payload = {"text": 'zoë 🚀 "quoted" \\u0000', "big": 2**70, "n": [1.5, -0.0]}

    job = (await repository.add(new_job(payload))).job
    stored = await repository.get(job.id)

    assert stored is not None
    assert stored.payload == payload


async def test_payload_with_nul_is_rejected(repository: PostgresJobRepository) -> None:
    with pytest.raises(InvalidJobRequest) as caught:
        await repository.add(new_job({"text": "a\x00b"}))

    page = await repository.list_jobs(JobQuery())
    assert caught.value.field == "payload"
    assert page.jobs == []


async def test_nul_in_result_and_error_is_replaced(
    repository: PostgresJobRepository,
) -> None:
    await repository.add_many([new_job(1), new_job(2)])
    first, second = await claim(repository, ("default",), 2)

    completed = await repository.complete([Completion(lease_of(first), "x\x00y")])
    failed = await repository.fail(
        [
            Failure(
                lease_of(second),
                JobState.FAILED,
                timedelta(seconds=5),
                ErrorInfo("Boom\x00", "bad\x00byte", "line\x00"),
            )
        ]
    )

    done = await repository.get(first.id)
    retried = await repository.get(second.id)
    assert completed == {first.id}
    assert failed == {second.id}
    assert done is not None
    assert done.result == f"x{REPLACEMENT_CHARACTER}y"
    assert retried is not None
    assert retried.last_error == ErrorInfo(
        f"Boom{REPLACEMENT_CHARACTER}",
        f"bad{REPLACEMENT_CHARACTER}byte",
        f"line{REPLACEMENT_CHARACTER}",
    )


async def test_claim_across_queues_by_priority(
    repository: PostgresJobRepository,
) -> None:
    low = (await repository.add(new_job("low", queue="a", priority=1))).job
    high = (await repository.add(new_job("high", queue="b", priority=5))).job
    middle = (await repository.add(new_job("middle", queue="a", priority=3))).job

    first = await claim(repository, ("a", "b"), 2)
    rest = await claim(repository, ("a", "b", "a"), 5)

    assert [job.id for job in first] == [high.id, middle.id]
    assert [job.id for job in rest] == [low.id]


async def test_claim_skips_jobs_of_other_states(
    repository: PostgresJobRepository,
) -> None:
    cancelled = (await repository.add(new_job())).job
    await repository.set_state(cancelled.id, JobState.PENDING, JobState.CANCELLED)
    pending = (await repository.add(new_job())).job

    claimed = await claim(repository, ("default",), 10)

    assert [job.id for job in claimed] == [pending.id]


async def test_expire_leaves_live_lease_alone(
    repository: PostgresJobRepository,
) -> None:
    await repository.add(new_job())
    [job] = await claim(repository, ("default",), 1)
    error = ErrorInfo("LeaseExpired", "expired")

    expired = await repository.expire(
        [Failure(lease_of(job), JobState.FAILED, timedelta(0), error)]
    )

    stored = await repository.get(job.id)
    assert expired == set()
    assert stored is not None
    assert stored.state is JobState.IN_PROGRESS


async def test_extend_with_wrong_token_is_ignored(
    repository: PostgresJobRepository,
) -> None:
    await repository.add(new_job())
    [job] = await claim(repository, ("default",), 1)

    extended = await repository.extend_leases(
        [Lease(job.id, LeaseToken(uuid.uuid4()))], LEASE
    )

    stored = await repository.get(job.id)
    assert extended == set()
    assert stored is not None
    assert stored.lease_expires_at == job.lease_expires_at


async def test_failure_to_other_state_is_rejected(
    repository: PostgresJobRepository,
) -> None:
    await repository.add(new_job())
    [job] = await claim(repository, ("default",), 1)

    with pytest.raises(ValueError, match="FAILED or DEAD"):
        await repository.fail(
            [
                Failure(
                    lease_of(job), JobState.COMPLETED, timedelta(0), ErrorInfo("E", "")
                )
            ]
        )


async def test_set_state_checks_lifecycle(repository: PostgresJobRepository) -> None:
    job = (await repository.add(new_job())).job

    with pytest.raises(IllegalTransition):
        await repository.set_state(job.id, JobState.COMPLETED, JobState.PENDING)
    with pytest.raises(ValueError, match="CANCELLED or PENDING"):
        await repository.set_state(job.id, JobState.PENDING, JobState.IN_PROGRESS)


async def test_requeue_mirrors_domain(repository: PostgresJobRepository) -> None:
    await repository.add(new_job(max_attempts=1))
    [job] = await claim(repository, ("default",), 1)
    await repository.fail(
        [Failure(lease_of(job), JobState.DEAD, timedelta(0), ErrorInfo("E", "m"))]
    )
    dead = await repository.get(job.id)
    assert dead is not None

    requeued = await repository.set_state(job.id, JobState.DEAD, JobState.PENDING)

    assert requeued is not None
    assert requeued == dead.requeued(requeued.updated_at)


async def test_ids_beyond_bigint_find_nothing(
    repository: PostgresJobRepository,
) -> None:
    await repository.add(new_job())

    missing = await repository.get(JobId(2**63))
    moved = await repository.set_state(
        JobId(2**64), JobState.PENDING, JobState.CANCELLED
    )
    page = await repository.list_jobs(JobQuery(before_id=JobId(2**70)))

    assert missing is None
    assert moved is None
    assert len(page.jobs) == 1


async def test_rows_written_by_sql_are_readable(
    repository: PostgresJobRepository, engine: AsyncEngine
) -> None:
    async with engine.connect() as connection:
        job_id = await connection.scalar(
            sa.insert(jobs)
            .values(
                task="echo",
                queue="default",
                payload={"from": "sql"},
                state=JobState.PENDING.value,
                run_at=sa.func.now(),
                max_attempts=3,
            )
            .returning(jobs.c.id)
        )

    [claimed] = await claim(repository, ("default",), 1)

    assert claimed.id == job_id
    assert claimed.payload == {"from": "sql"}
    assert claimed.attempt == 1


async def test_repeated_key_within_batch_returns_first(
    repository: PostgresJobRepository,
) -> None:
    first, repeat = await repository.add_many(
        [new_job("a", idempotency_key="k"), new_job("a", idempotency_key="k")]
    )

    assert first.created
    assert not repeat.created
    assert repeat.job.id == first.job.id


@pytest.mark.parametrize("expire", [False, True])
async def test_batch_failures_keep_their_own_outcome(
    repository: PostgresJobRepository, expire: bool
) -> None:
    await repository.add_many([new_job(i) for i in range(3)])
    claimed = await claim(repository, ("default",), 3)
    if expire:
        repository.time_shift = LEASE + timedelta(seconds=1)
    targets = [JobState.FAILED, JobState.DEAD, JobState.FAILED]
    delays = [timedelta(seconds=10), timedelta(0), timedelta(seconds=99)]
    failures = [
        Failure(lease_of(job), target, delay, ErrorInfo(f"Error{i}", f"message {i}"))
        for i, (job, target, delay) in enumerate(
            zip(claimed, targets, delays, strict=True)
        )
    ]
    now = await repository.now()

    record = repository.expire if expire else repository.fail
    applied = await record(list(reversed(failures)))

    assert applied == {job.id for job in claimed}
    for i, (job, target, delay) in enumerate(
        zip(claimed, targets, delays, strict=True)
    ):
        stored = await repository.get(job.id)
        assert stored is not None
        assert stored.state is target
        assert stored.last_error == ErrorInfo(f"Error{i}", f"message {i}")
        assert stored.attempts[-1].error == ErrorInfo(f"Error{i}", f"message {i}")
        if target is JobState.FAILED:
            assert timedelta(0) <= stored.run_at - (now + delay) < timedelta(seconds=5)
        else:
            assert stored.finished_at is not None


async def test_completion_writes_no_attempt_row(
    repository: PostgresJobRepository, engine: AsyncEngine
) -> None:
    job = (await repository.add(new_job())).job
    [claimed] = await claim(repository, ("default",), 1)
    await repository.complete([Completion(lease_of(claimed), "done")])

    stored = await repository.get(job.id)
    async with engine.connect() as connection:
        attempt_rows = await connection.scalar(
            sa.select(sa.func.count()).select_from(job_attempts)
        )

    assert attempt_rows == 0
    assert stored is not None
    [attempt] = stored.attempts
    assert attempt.attempt == 1
    assert attempt.worker_id == WORKER
    assert attempt.started_at == claimed.started_at
    assert attempt.finished_at == stored.finished_at
    assert attempt.outcome is AttemptOutcome.COMPLETED
    assert attempt.error is None


async def test_old_completed_attempt_row_listed_once(
    repository: PostgresJobRepository, engine: AsyncEngine
) -> None:
    job = (await repository.add(new_job())).job
    [claimed] = await claim(repository, ("default",), 1)
    await repository.complete([Completion(lease_of(claimed), "done")])
    # Stores written before completions stopped inserting attempt rows.
    columns = ["job_id", "attempt", "worker_id", "started_at", "finished_at"]
    async with engine.begin() as connection:
        await connection.execute(
            sa.insert(job_attempts).from_select(
                [*columns, "outcome"],
                sa.select(
                    jobs.c.id,
                    jobs.c.attempt,
                    jobs.c.worker_id,
                    jobs.c.started_at,
                    jobs.c.finished_at,
                    sa.literal(AttemptOutcome.COMPLETED.value),
                ),
            )
        )

    stored = await repository.get(job.id)

    assert stored is not None
    assert [attempt.outcome for attempt in stored.attempts] == [
        AttemptOutcome.COMPLETED
    ]


@pytest.mark.parametrize("batch", [False, True])
async def test_submitted_jobs_equal_stored_jobs(
    repository: PostgresJobRepository, batch: bool
) -> None:
    due = datetime(2030, 1, 1, tzinfo=UTC)
    new_jobs = [
        new_job({"n": 1}),
        NewJob(JobRequest("echo", [2], queue="other", priority=7), 3, None),
        new_job({"n": 3}, delay=timedelta(minutes=5)),
        new_job({"n": 4}, run_at=due, idempotency_key="k-4"),
    ]

    if batch:
        submissions = await repository.add_many(new_jobs)
    else:
        submissions = [await repository.add(new) for new in new_jobs]

    for submission in submissions:
        assert submission.created
        assert submission.job == await repository.get(submission.job_id)
    first, _, delayed, scheduled = (s.job for s in submissions)
    assert first.run_at == first.created_at
    assert delayed.run_at == delayed.created_at + timedelta(minutes=5)
    assert scheduled.run_at == due


async def test_unkeyed_batch_keeps_input_order(
    repository: PostgresJobRepository,
) -> None:
    submissions = await repository.add_many(
        [NewJob(JobRequest("echo", i), 3, None) for i in range(50)]
    )

    ids = [submission.job_id for submission in submissions]
    stored = [await repository.get(job_id) for job_id in ids]
    assert ids == sorted(ids)
    assert [job.payload for job in stored if job is not None] == list(range(50))
