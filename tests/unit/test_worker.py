"""The worker on the in-memory store, with time driven by a ManualTimer.

No test waits on the wall clock: sleeps, timeouts, heartbeats and grace
periods all run on virtual time that the test advances, and the store's
FakeClock moves with it.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    MutableMapping,
    Sequence,
)
from datetime import timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from conveyor.adapters.clock import FakeClock, FixedRandom, SequentialTokens
from conveyor.adapters.memory import InMemoryJobRepository
from conveyor.application.executing import ExecuteJobs
from conveyor.application.ports import ClaimRequest, Completion, JobQuery, Lease
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.errors import StoreUnavailable
from conveyor.domain.job import (
    AttemptOutcome,
    Job,
    JobId,
    JobRequest,
    JsonValue,
    WorkerId,
)
from conveyor.domain.retry import RetryPolicy
from conveyor.domain.states import JobState
from conveyor.entrypoints.builtin_tasks import register_builtins
from conveyor.entrypoints.tasks import JobContext, TaskRegistry
from conveyor.entrypoints.worker import Worker
from conveyor.entrypoints.worker.claim import PrefetchSizer
from conveyor.entrypoints.worker.timing import ManualTimer

LEASE_SECONDS = 30.0
POLICY = RetryPolicy(base_delay=10, factor=2, max_delay=100, jitter=0)
WORKER = WorkerId("worker-1")
JOB_FIELDS = ("job_id", "task", "queue", "attempt", "worker_id")


class SpyRepository(InMemoryJobRepository):
    """The in-memory store, recording calls and failing the first few on request."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock)
        self.claim_limits: list[int] = []
        self.completion_batches: list[int] = []
        self.heartbeats = 0
        self.fail_claims = 0
        self.fail_completions = 0
        self.fail_heartbeats = 0

    async def claim(self, request: ClaimRequest) -> list[Job]:
        self.claim_limits.append(request.limit)
        if self.fail_claims > 0:
            self.fail_claims -= 1
            raise StoreUnavailable("connection refused")
        return await super().claim(request)

    async def complete(self, completions: Sequence[Completion]) -> set[JobId]:
        if self.fail_completions > 0:
            self.fail_completions -= 1
            raise StoreUnavailable("connection reset")
        self.completion_batches.append(len(completions))
        return await super().complete(completions)

    async def extend_leases(
        self, leases: Sequence[Lease], duration: timedelta
    ) -> set[JobId]:
        self.heartbeats += 1
        if self.fail_heartbeats > 0:
            self.fail_heartbeats -= 1
            raise StoreUnavailable("connection reset")
        return await super().extend_leases(leases, duration)


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.timer = ManualTimer(self.clock)
        self.repository = SpyRepository(self.clock)
        self.registry = TaskRegistry()
        register_builtins(self.registry)
        self.submitter = SubmitJobs(self.repository, default_max_attempts=3)
        self.execute = ExecuteJobs(
            self.repository,
            SequentialTokens(),
            FixedRandom(0.0),
            lambda task: self.registry.retry_policy(task, POLICY),
            timedelta(seconds=LEASE_SECONDS),
        )
        self._runs: list[asyncio.Task[None]] = []

    def worker(self, **overrides: Any) -> Worker:
        settings: dict[str, Any] = {
            "execute": self.execute,
            "registry": self.registry,
            "worker_id": WORKER,
            "queues": ["default"],
            "concurrency": 2,
            "claim_batch": 10,
            "poll_seconds": 1.0,
            "heartbeat_seconds": 10.0,
            "shutdown_grace_seconds": 30.0,
            "task_timeout_seconds": 60.0,
            "timer": self.timer,
            "random": FixedRandom(0.0),
        }
        settings.update(overrides)
        return Worker(**settings)

    def start(self, worker: Worker) -> asyncio.Task[None]:
        run = asyncio.create_task(worker.run())
        self._runs.append(run)
        return run

    async def submit(
        self, task: str, payload: JsonValue = None, **options: Any
    ) -> JobId:
        submission = await self.submitter.submit(JobRequest(task, payload, **options))
        return submission.job.id

    async def job(self, job_id: JobId) -> Job:
        job = await self.repository.get(job_id)
        assert job is not None
        return job

    async def until(
        self,
        condition: Callable[[], Awaitable[bool]],
        step: float = 0.01,
        max_seconds: float = 600.0,
        real_pause: float = 0.0,
    ) -> None:
        """Advance virtual time in steps until `condition` holds."""
        waited = 0.0
        while not await condition():
            if waited > max_seconds:
                raise AssertionError(f"condition still false after {waited} s")
            await self.timer.advance(step)
            if real_pause:
                # Threads of sync handlers run on real time.
                await asyncio.sleep(real_pause)
            waited += step

    async def until_state(self, job_id: JobId, state: JobState, **options: Any) -> Job:
        async def reached() -> bool:
            return (await self.job(job_id)).state is state

        await self.until(reached, **options)
        return await self.job(job_id)

    async def stop(self, worker: Worker, run: asyncio.Task[None]) -> None:
        worker.request_stop()
        await self.until_finished(run)

    async def until_finished(self, run: asyncio.Task[None]) -> None:
        async def finished() -> bool:
            return run.done()

        await self.until(finished, step=0.5)
        run.result()

    async def cancel_runs(self) -> None:
        for run in self._runs:
            run.cancel()
        await asyncio.gather(*self._runs, return_exceptions=True)


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    harness = Harness()
    yield harness
    await harness.cancel_runs()


Logs = list[MutableMapping[str, Any]]


@pytest.fixture
def logs() -> Iterator[Logs]:
    with capture_logs() as captured:
        yield captured


def events(logs: Logs, name: str) -> Logs:
    return [entry for entry in logs if entry["event"] == name]


def assert_job_fields(
    entry: MutableMapping[str, Any], job_id: JobId, task: str
) -> None:
    for field in JOB_FIELDS:
        assert field in entry, f"{entry['event']} lacks {field}"
    assert entry["job_id"] == job_id
    assert entry["task"] == task
    assert entry["worker_id"] == WORKER


class Gate:
    """A blocking async task handler that the test opens when it likes."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self.started: list[JobId] = []
        self.cancelled: list[JobId] = []

    async def __call__(self, payload: JsonValue, context: JobContext) -> JsonValue:
        self.started.append(context.job_id)
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled.append(context.job_id)
            raise
        return {"done": context.job_id}


async def test_job_completes_with_result(harness: Harness, logs: Logs) -> None:
    job_id = await harness.submit("echo", {"text": "hi", "n": [1, 2]})
    worker = harness.worker()
    run = harness.start(worker)

    job = await harness.until_state(job_id, JobState.COMPLETED)

    assert job.result == {"text": "hi", "n": [1, 2]}
    assert job.attempt == 1
    assert [a.outcome for a in job.attempts] == [AttemptOutcome.COMPLETED]
    assert job.attempts[0].worker_id == WORKER
    started = events(logs, "job_started")
    completed = events(logs, "job_completed")
    written = events(logs, "jobs_completed")
    assert len(started) == 1
    assert len(completed) == 1
    assert_job_fields(started[0], job_id, "echo")
    assert_job_fields(completed[0], job_id, "echo")
    assert started[0]["log_level"] == "debug"
    assert completed[0]["log_level"] == "debug"
    assert "duration_ms" in completed[0]
    assert [(w["log_level"], w["count"], w["job_ids"]) for w in written] == [
        ("info", 1, [job_id])
    ]
    assert written[0]["worker_id"] == WORKER
    await harness.stop(worker, run)
    assert worker.held_count == 0


async def test_worker_logs_start_and_stop(harness: Harness, logs: Logs) -> None:
    worker = harness.worker(concurrency=3, queues=["mail", "default"])
    run = harness.start(worker)
    await harness.timer.advance(0)

    await harness.stop(worker, run)

    started = events(logs, "worker_started")
    stopped = events(logs, "worker_stopped")
    assert len(started) == 1
    assert len(stopped) == 1
    for entry in (started[0], stopped[0]):
        assert entry["worker_id"] == WORKER
        assert entry["queues"] == ["mail", "default"]
        assert entry["concurrency"] == 3


async def test_failing_job_retries_then_dies(harness: Harness, logs: Logs) -> None:
    job_id = await harness.submit("fail", {"message": "boom"}, max_attempts=3)
    worker = harness.worker()
    harness.start(worker)

    failed = await harness.until_state(job_id, JobState.FAILED, real_pause=0.001)
    first_retry_at = failed.run_at
    dead = await harness.until_state(job_id, JobState.DEAD, step=1.0, real_pause=0.001)

    assert failed.attempt == 1
    assert first_retry_at == failed.updated_at + timedelta(seconds=10)
    assert dead.attempt == 3
    assert [a.outcome for a in dead.attempts] == [AttemptOutcome.FAILED] * 3
    assert dead.last_error is not None
    assert dead.last_error.type == "RequestedFailure"
    assert "boom (attempt 3)" in dead.last_error.message
    assert "RequestedFailure" in dead.last_error.traceback
    failures = events(logs, "job_failed")
    assert [entry["retry_in_seconds"] for entry in failures] == [10.0, 20.0]
    assert all(entry["log_level"] == "warning" for entry in failures)
    assert failures[0]["error_type"] == "RequestedFailure"
    assert_job_fields(failures[0], job_id, "fail")
    deaths = events(logs, "job_dead")
    assert len(deaths) == 1
    assert deaths[0]["log_level"] == "error"
    assert deaths[0]["attempt"] == 3
    assert "boom" in deaths[0]["error"]


async def test_flaky_job_succeeds_on_retry(harness: Harness) -> None:
    job_id = await harness.submit("fail", {"times": 1})
    harness.start(harness.worker())

    job = await harness.until_state(
        job_id, JobState.COMPLETED, step=1.0, real_pause=0.001
    )

    assert job.attempt == 2
    assert job.result == {"failed_attempts": 1}
    assert [a.outcome for a in job.attempts] == [
        AttemptOutcome.FAILED,
        AttemptOutcome.COMPLETED,
    ]


async def test_retry_runs_when_due_not_next_poll(harness: Harness) -> None:
    job_id = await harness.submit("fail", {"times": 1})
    harness.start(harness.worker(poll_seconds=3600.0))
    failed = await harness.until_state(job_id, JobState.FAILED, real_pause=0.001)
    failed_at = harness.timer.monotonic()

    job = await harness.until_state(
        job_id, JobState.COMPLETED, step=0.05, real_pause=0.001
    )

    assert failed.run_at == failed.updated_at + timedelta(seconds=10)
    assert job.attempt == 2
    assert harness.timer.monotonic() - failed_at < 11.0


async def test_traceback_starts_at_handler(harness: Harness) -> None:
    def broken_sync(payload: JsonValue) -> None:
        raise KeyError("missing")

    async def broken_async(payload: JsonValue) -> None:
        raise RuntimeError("bad state")

    harness.registry.register(broken_sync, "broken_sync")
    harness.registry.register(broken_async, "broken_async")
    sync_id = await harness.submit("broken_sync")
    async_id = await harness.submit("broken_async")
    harness.start(harness.worker())

    sync_job = await harness.until_state(sync_id, JobState.FAILED, real_pause=0.001)
    async_job = await harness.until_state(async_id, JobState.FAILED)

    for job, function in ((sync_job, "broken_sync"), (async_job, "broken_async")):
        assert job.last_error is not None
        lines = job.last_error.traceback.splitlines()
        assert lines[0] == "Traceback (most recent call last):"
        assert f"in {function}" in lines[1]
        assert "worker/run.py" not in job.last_error.traceback
    assert sync_job.last_error is not None
    assert sync_job.last_error.type == "KeyError"
    assert sync_job.last_error.message == "'missing'"


async def test_unknown_task_goes_dead(harness: Harness, logs: Logs) -> None:
    job_id = await harness.submit("no.such.task", {"x": 1}, max_attempts=5)
    harness.start(harness.worker())

    job = await harness.until_state(job_id, JobState.DEAD)

    assert job.attempt == 1
    assert job.last_error is not None
    assert job.last_error.type == "UnknownTask"
    assert "'no.such.task'" in job.last_error.message
    assert "echo, fail, sleep" in job.last_error.message
    deaths = events(logs, "job_dead")
    assert len(deaths) == 1
    assert deaths[0]["log_level"] == "error"
    assert deaths[0]["error_type"] == "UnknownTask"
    assert_job_fields(deaths[0], job_id, "no.such.task")
    assert events(logs, "job_started") == []


async def test_async_timeout_cancels_handler(harness: Harness) -> None:
    gate = Gate()
    harness.registry.register(gate, "slow", timeout=5)
    job_id = await harness.submit("slow")
    harness.start(harness.worker())

    job = await harness.until_state(job_id, JobState.FAILED, step=0.5)

    assert gate.cancelled == [job_id]
    assert job.last_error is not None
    assert job.last_error.type == "TaskTimeout"
    assert "5 s timeout and was cancelled" in job.last_error.message


async def test_worker_default_timeout_applies(harness: Harness) -> None:
    gate = Gate()
    harness.registry.register(gate, "slow")
    job_id = await harness.submit("slow")
    harness.start(harness.worker(task_timeout_seconds=2.0))

    job = await harness.until_state(job_id, JobState.FAILED, step=0.5)

    assert job.last_error is not None
    assert "2 s timeout" in job.last_error.message


async def test_sync_task_runs_in_thread(harness: Harness) -> None:
    threads: list[str] = []

    def record_thread(payload: JsonValue) -> JsonValue:
        threads.append(threading.current_thread().name)
        return payload

    harness.registry.register(record_thread, "sync")
    job_id = await harness.submit("sync", "hello")
    harness.start(harness.worker())

    job = await harness.until_state(job_id, JobState.COMPLETED, real_pause=0.001)

    assert job.result == "hello"
    assert len(threads) == 1
    assert threads[0] != threading.main_thread().name
    assert threads[0].startswith("conveyor-task")


async def test_sync_timeout_records_failure(harness: Harness) -> None:
    release = threading.Event()
    entered = threading.Event()

    def stuck(payload: JsonValue) -> JsonValue:
        entered.set()
        release.wait(timeout=30)
        return None

    harness.registry.register(stuck, "stuck", timeout=3)
    job_id = await harness.submit("stuck")
    worker = harness.worker()
    harness.start(worker)

    job = await harness.until_state(job_id, JobState.FAILED, step=0.5, real_pause=0.001)

    assert entered.is_set()
    assert job.last_error is not None
    assert job.last_error.type == "TaskTimeout"
    assert "runs on in the background" in job.last_error.message
    assert worker._runner is not None
    assert worker._runner.abandoned_threads == 1
    release.set()

    async def thread_ended() -> bool:
        assert worker._runner is not None
        return worker._runner.abandoned_threads == 0

    await harness.until(thread_ended, real_pause=0.001)


async def test_handler_receives_context(harness: Harness) -> None:
    seen: list[JobContext] = []

    async def inspect_context(payload: JsonValue, *, context: JobContext) -> None:
        seen.append(context)

    harness.registry.register(inspect_context, "ctx", max_attempts=4)
    job_id = await harness.submit("ctx", max_attempts=4, queue="default")
    harness.start(harness.worker())

    await harness.until_state(job_id, JobState.COMPLETED)

    assert seen == [
        JobContext(
            job_id=job_id,
            task="ctx",
            queue="default",
            attempt=1,
            max_attempts=4,
            worker_id=WORKER,
        )
    ]


async def test_context_variables_stay_with_their_job(harness: Harness) -> None:
    marker: contextvars.ContextVar[int | None] = contextvars.ContextVar(
        "marker", default=None
    )
    seen: list[int | None] = []

    async def set_marker(payload: JsonValue) -> None:
        seen.append(marker.get())
        marker.set(payload if isinstance(payload, int) else None)

    harness.registry.register(set_marker, "marker")
    first = await harness.submit("marker", 1)
    second = await harness.submit("marker", 2)
    harness.start(harness.worker(concurrency=1))

    await harness.until_state(first, JobState.COMPLETED)
    await harness.until_state(second, JobState.COMPLETED)

    assert seen == [None, None]
    assert marker.get() is None


async def test_sync_handler_context_stays_with_job(harness: Harness) -> None:
    marker: contextvars.ContextVar[int | None] = contextvars.ContextVar(
        "sync_marker", default=None
    )
    seen: list[int | None] = []

    def set_marker(payload: JsonValue) -> None:
        seen.append(marker.get())
        marker.set(payload if isinstance(payload, int) else None)

    harness.registry.register(set_marker, "sync_marker")
    first = await harness.submit("sync_marker", 1)
    second = await harness.submit("sync_marker", 2)
    worker = harness.worker(concurrency=1)
    run = harness.start(worker)

    await harness.until_state(first, JobState.COMPLETED, real_pause=0.01)
    await harness.until_state(second, JobState.COMPLETED, real_pause=0.01)

    assert seen == [None, None]
    await harness.stop(worker, run)


async def test_result_that_is_not_json_fails(harness: Harness) -> None:
    async def returns_object(payload: JsonValue) -> object:
        return object()

    async def returns_tuple(payload: JsonValue) -> object:
        return (1, "two")

    harness.registry.register(returns_object, "bad")
    harness.registry.register(returns_tuple, "tuple")
    bad_id = await harness.submit("bad")
    tuple_id = await harness.submit("tuple")
    harness.start(harness.worker())

    bad = await harness.until_state(bad_id, JobState.FAILED)
    converted = await harness.until_state(tuple_id, JobState.COMPLETED)

    assert bad.last_error is not None
    assert bad.last_error.type == "ResultNotSerializable"
    assert converted.result == [1, "two"]


async def test_heartbeats_keep_long_job_lease(harness: Harness, logs: Logs) -> None:
    gate = Gate()
    harness.registry.register(gate, "long")
    job_id = await harness.submit("long")
    harness.start(harness.worker(task_timeout_seconds=1000.0))
    await harness.until_state(job_id, JobState.IN_PROGRESS)

    await harness.timer.advance(4 * LEASE_SECONDS)
    running = await harness.job(job_id)
    gate.opened.set()
    done = await harness.until_state(job_id, JobState.COMPLETED)

    assert running.state is JobState.IN_PROGRESS
    assert running.lease_expires_at is not None
    assert running.lease_expires_at > harness.clock.now()
    assert harness.repository.heartbeats >= 12
    assert done.attempt == 1
    assert done.result == {"done": job_id}
    assert events(logs, "lease_lost") == []
    assert events(logs, "lease_expired") == []


async def test_one_heartbeat_covers_all_held_jobs(harness: Harness) -> None:
    gate = Gate()
    harness.registry.register(gate, "long")
    for _ in range(4):
        await harness.submit("long")
    worker = harness.worker(concurrency=2, prefetch=2)
    harness.start(worker)
    await harness.timer.advance(0)
    assert worker.running_count == 2
    assert worker.prefetched_count == 2

    await harness.timer.advance(10.0)

    assert harness.repository.heartbeats == 1
    page = await harness.repository.list_jobs(JobQuery())
    assert len(page.jobs) == 4
    for job in page.jobs:
        assert job.lease_expires_at == harness.clock.now() + timedelta(
            seconds=LEASE_SECONDS
        )


async def test_lost_lease_rejects_result(harness: Harness, logs: Logs) -> None:
    gate = Gate()
    harness.registry.register(gate, "long")
    job_id = await harness.submit("long")
    harness.repository.fail_heartbeats = 1000
    harness.start(harness.worker(task_timeout_seconds=1000.0))
    await harness.until_state(job_id, JobState.IN_PROGRESS)

    # Heartbeats fail, so the lease runs out and the worker's own recovery
    # sweep counts the attempt as failed. Once heartbeats work again, the
    # next one finds the lease gone.
    recovered = await harness.until_state(job_id, JobState.FAILED, step=1.0)
    harness.repository.fail_heartbeats = 0
    await harness.timer.advance(6.0)
    lost_after_heartbeat = [e for e in events(logs, "lease_lost")]
    gate.opened.set()
    await harness.timer.advance(0.1)
    after_late_result = await harness.job(job_id)
    final = await harness.until_state(job_id, JobState.COMPLETED, step=1.0)

    assert recovered.attempts[0].outcome is AttemptOutcome.LEASE_EXPIRED
    assert len(lost_after_heartbeat) == 1
    assert_job_fields(lost_after_heartbeat[0], job_id, "long")
    assert "rejected" not in lost_after_heartbeat[0]
    assert after_late_result.state is JobState.FAILED
    assert after_late_result.result is None
    assert final.attempt == 2
    assert [a.outcome for a in final.attempts] == [
        AttemptOutcome.LEASE_EXPIRED,
        AttemptOutcome.COMPLETED,
    ]
    assert len(events(logs, "lease_lost")) == 1


async def test_recovery_sweep_recovers_dead_worker_jobs(
    harness: Harness, logs: Logs
) -> None:
    job_id = await harness.submit("echo", "again")
    ghost = WorkerId("ghost-1")
    [claimed] = await harness.execute.claim(ghost, ["default"], 1)
    harness.clock.advance(LEASE_SECONDS + 1)
    harness.start(harness.worker(recovery_seconds=2.0))

    job = await harness.until_state(job_id, JobState.COMPLETED, step=1.0)

    assert claimed.id == job_id
    assert job.attempt == 2
    assert [a.outcome for a in job.attempts] == [
        AttemptOutcome.LEASE_EXPIRED,
        AttemptOutcome.COMPLETED,
    ]
    [expired] = events(logs, "lease_expired")
    assert expired["job_id"] == job_id
    assert expired["worker_id"] == ghost
    assert expired["recovered_by"] == WORKER
    assert expired["attempt"] == 1
    assert expired["task"] == "echo"
    assert expired["queue"] == "default"
    assert expired["state"] == "FAILED"
    assert expired["retry_in_seconds"] == 10.0
    [recovered] = events(logs, "jobs_recovered")
    assert recovered["job_ids"] == [job_id]


async def test_idle_sweeps_log_nothing(harness: Harness, logs: Logs) -> None:
    harness.start(harness.worker(recovery_seconds=1.0))

    await harness.timer.advance(10.0)

    assert events(logs, "jobs_recovered") == []
    assert events(logs, "lease_expired") == []


async def test_claims_never_exceed_room(harness: Harness) -> None:
    gate = Gate()
    harness.registry.register(gate, "long")
    for _ in range(20):
        await harness.submit("long")
    worker = harness.worker(concurrency=3, prefetch=2, claim_batch=10)
    harness.start(worker)

    await harness.timer.advance(0)

    assert harness.repository.claim_limits == [5]
    assert worker.running_count == 3
    assert worker.prefetched_count == 2


def test_prefetch_grows_for_short_jobs() -> None:
    sizer = PrefetchSizer(concurrency=10, minimum=1, maximum=100)
    initial = sizer.size

    for _ in range(50):
        sizer.claim_finished(0.002)
        sizer.job_finished(0.00005)

    assert initial == 1
    assert sizer.size == 100


def test_prefetch_reset_forgets_short_jobs() -> None:
    sizer = PrefetchSizer(concurrency=10, minimum=0, maximum=500)
    for _ in range(50):
        sizer.claim_finished(0.002)
        sizer.job_finished(0.00005)
    grown = sizer.size

    sizer.reset()
    sizer.claim_finished(0.002)

    assert grown == 500
    assert sizer.size == 0


def test_prefetch_shrinks_for_long_jobs() -> None:
    sizer = PrefetchSizer(concurrency=10, minimum=1, maximum=100)

    for _ in range(50):
        sizer.claim_finished(0.002)
        sizer.job_finished(10.0)

    assert sizer.size == 1


def test_prefetch_follows_job_time() -> None:
    sizer = PrefetchSizer(concurrency=4, minimum=1, maximum=100)

    sizer.claim_finished(0.01)
    sizer.job_finished(0.002)

    # Twice the jobs that 4 slots start during one 10 ms claim: 2 * 4 * 5.
    assert sizer.size == 40


def test_fixed_prefetch_stays() -> None:
    sizer = PrefetchSizer(concurrency=10, minimum=1, maximum=100, fixed=3)

    sizer.claim_finished(0.002)
    sizer.job_finished(0.00001)

    assert sizer.size == 3


async def test_full_batch_claims_again_at_once(harness: Harness) -> None:
    for _ in range(25):
        await harness.submit("echo")
    worker = harness.worker(concurrency=5, prefetch=5, claim_batch=10)
    harness.start(worker)

    await harness.timer.settle()

    # Three claims of 10 (the last one comes back with 5) before any time passed.
    assert harness.repository.claim_limits[:3] == [10, 10, 10]


async def test_completions_are_written_in_batches(harness: Harness) -> None:
    job_ids = [await harness.submit("echo", n) for n in range(6)]
    harness.start(harness.worker(concurrency=10, claim_batch=10))

    for job_id in job_ids:
        await harness.until_state(job_id, JobState.COMPLETED)

    assert harness.repository.completion_batches == [6]


async def test_idle_worker_writes_results_at_once(harness: Harness) -> None:
    job_id = await harness.submit("echo", 1)
    harness.start(harness.worker(flush_delay=1000.0))

    await harness.timer.settle()

    assert (await harness.job(job_id)).state is JobState.COMPLETED


async def test_busy_worker_waits_for_flush_delay(harness: Harness) -> None:
    harness.registry.register(Gate(), "busy")
    await harness.submit("busy")
    job_id = await harness.submit("echo", 1)
    harness.start(harness.worker(flush_delay=1.0))
    await harness.timer.advance(0.5)
    buffered = await harness.job(job_id)

    await harness.timer.advance(0.5)

    assert buffered.state is JobState.IN_PROGRESS
    assert (await harness.job(job_id)).state is JobState.COMPLETED


async def test_full_buffer_is_written_without_delay(harness: Harness) -> None:
    for n in range(4):
        await harness.submit("echo", n)
    harness.start(harness.worker(concurrency=4, flush_size=2))

    await harness.timer.settle()

    assert harness.repository.completion_batches == [2, 2]


async def test_idle_worker_wakes_on_notification(harness: Harness) -> None:
    class Wakeups:
        def __init__(self) -> None:
            self.notified = asyncio.Event()

        async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
            await self.notified.wait()
            self.notified.clear()
            return True

    wakeups = Wakeups()
    harness.start(harness.worker(wakeups=wakeups, poll_seconds=3600.0))
    await harness.timer.settle()
    job_id = await harness.submit("echo")

    wakeups.notified.set()
    await harness.timer.settle()

    # No virtual time passed: the claim, the run and the write of an idle
    # worker wait for nothing.
    assert (await harness.job(job_id)).state is JobState.COMPLETED
    assert len(harness.repository.claim_limits) == 2


async def test_shutdown_releases_prefetched_and_waits_running(
    harness: Harness, logs: Logs
) -> None:
    gate = Gate()
    harness.registry.register(gate, "long")
    job_ids = [await harness.submit("long") for _ in range(3)]
    worker = harness.worker(concurrency=1, prefetch=1, shutdown_grace_seconds=60.0)
    run = harness.start(worker)
    await harness.timer.advance(0)
    assert gate.started == [job_ids[0]]

    worker.request_stop()
    await harness.timer.advance(5.0)
    released = await harness.job(job_ids[1])
    running = await harness.job(job_ids[0])
    gate.opened.set()
    await harness.until_finished(run)

    assert running.state is JobState.IN_PROGRESS
    assert released.state is JobState.PENDING
    assert released.attempt == 0
    assert [a.outcome for a in released.attempts] == [AttemptOutcome.RELEASED]
    assert (await harness.job(job_ids[0])).state is JobState.COMPLETED
    assert (await harness.job(job_ids[2])).state is JobState.PENDING
    assert gate.started == [job_ids[0]]
    assert gate.cancelled == []
    assert len(events(logs, "worker_stopped")) == 1
    assert worker.held_count == 0


async def test_shutdown_after_grace_releases_running(
    harness: Harness, logs: Logs
) -> None:
    gate = Gate()
    harness.registry.register(gate, "long")
    job_id = await harness.submit("long")
    worker = harness.worker(shutdown_grace_seconds=5.0, task_timeout_seconds=1000.0)
    run = harness.start(worker)
    await harness.until_state(job_id, JobState.IN_PROGRESS)

    worker.request_stop()
    await harness.until_finished(run)
    job = await harness.job(job_id)

    assert gate.cancelled == [job_id]
    assert job.state is JobState.PENDING
    assert job.attempt == 0
    assert job.attempts[-1].outcome is AttemptOutcome.RELEASED
    released = events(logs, "job_released")
    assert len(released) == 1
    assert released[0]["reason"] == "shutdown grace period ended"


async def test_second_stop_skips_grace(harness: Harness) -> None:
    gate = Gate()
    harness.registry.register(gate, "long")
    job_id = await harness.submit("long")
    worker = harness.worker(shutdown_grace_seconds=3600.0)
    run = harness.start(worker)
    await harness.until_state(job_id, JobState.IN_PROGRESS)

    worker.request_stop()
    await harness.timer.advance(1.0)
    worker.request_stop()
    await harness.timer.advance(1.0)

    assert run.done()
    assert (await harness.job(job_id)).state is JobState.PENDING


async def test_store_outage_in_claim_is_survived(harness: Harness, logs: Logs) -> None:
    harness.repository.fail_claims = 5
    job_id = await harness.submit("echo", 1)
    harness.start(harness.worker())

    job = await harness.until_state(job_id, JobState.COMPLETED, step=0.1)

    assert job.result == 1
    assert len(harness.repository.claim_limits) >= 6
    warnings = events(logs, "store_unavailable")
    assert len(warnings) == 1
    assert warnings[0]["operation"] == "claim"
    assert warnings[0]["log_level"] == "warning"
    assert warnings[0]["error_type"] == "StoreUnavailable"
    [reconnected] = events(logs, "store_reconnected")
    assert reconnected["failures"] == 5


async def test_claim_backoff_grows_and_is_capped(harness: Harness) -> None:
    harness.repository.fail_claims = 10_000
    harness.start(harness.worker())

    await harness.timer.advance(60.0)

    # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 = 6.3 s, then one try per 5 s.
    tries = len(harness.repository.claim_limits)
    assert 16 <= tries <= 18


async def test_outage_during_completion_is_retried(harness: Harness) -> None:
    harness.repository.fail_completions = 3
    job_id = await harness.submit("echo", "x")
    harness.start(harness.worker())

    job = await harness.until_state(job_id, JobState.COMPLETED)

    assert job.result == "x"
    assert job.attempt == 1


async def test_crash_before_flush_reruns_job(harness: Harness) -> None:
    # A running job keeps the worker busy, so the result waits for the delay.
    harness.registry.register(Gate(), "busy")
    await harness.submit("busy")
    job_id = await harness.submit("echo", "once more")
    crashed = harness.worker(flush_delay=1000.0, worker_id=WorkerId("crashed-1"))
    crashed_run = harness.start(crashed)
    await harness.timer.advance(0.5)
    buffered = await harness.job(job_id)

    # Cancelling run() drops the buffer, as a killed process would.
    crashed_run.cancel()
    await asyncio.gather(crashed_run, return_exceptions=True)
    harness.start(harness.worker(recovery_seconds=1.0))
    job = await harness.until_state(job_id, JobState.COMPLETED, step=0.5)

    assert buffered.state is JobState.IN_PROGRESS
    assert buffered.result is None
    assert job.attempt == 2
    assert [a.outcome for a in job.attempts] == [
        AttemptOutcome.LEASE_EXPIRED,
        AttemptOutcome.COMPLETED,
    ]
    assert job.attempts[0].worker_id == WorkerId("crashed-1")
    assert job.result == "once more"


async def test_unwritable_completion_reruns_job(harness: Harness, logs: Logs) -> None:
    original = harness.repository.complete
    calls = 0

    async def complete_once_broken(completions: Sequence[Completion]) -> set[JobId]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("result column rejected the value")
        return await original(completions)

    harness.repository.complete = complete_once_broken  # type: ignore[method-assign]
    job_id = await harness.submit("echo", 5)
    harness.start(harness.worker(recovery_seconds=1.0))

    job = await harness.until_state(job_id, JobState.COMPLETED, step=0.5)

    assert job.attempt == 2
    assert job.attempts[0].outcome is AttemptOutcome.LEASE_EXPIRED
    [unwritten] = events(logs, "job_outcome_unwritten")
    assert unwritten["log_level"] == "error"
    assert unwritten["error_type"] == "RuntimeError"
    assert_job_fields(unwritten, job_id, "echo")


def test_heartbeat_must_be_shorter_than_lease(harness: Harness) -> None:
    with pytest.raises(ValueError, match="shorter than the lease"):
        harness.worker(heartbeat_seconds=LEASE_SECONDS)


def test_worker_needs_a_queue(harness: Harness) -> None:
    with pytest.raises(ValueError, match="at least one queue"):
        harness.worker(queues=[])
