"""The worker: claims jobs, runs them under a concurrency limit, drains on stop.

Four loops run side by side: claim (claim.py), heartbeat (heartbeat.py),
recovery (recovery.py) and the completion flusher (record.py). This module
runs the claimed jobs in `concurrency` slot tasks and owns the shutdown
sequence.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import random
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import structlog

from conveyor.application.executing import ExecuteJobs
from conveyor.application.ports import RandomSource
from conveyor.domain.job import Job, JobId, WorkerId
from conveyor.entrypoints.tasks import TaskRegistry
from conveyor.entrypoints.worker.claim import ClaimLoop, PrefetchSizer, Wakeups
from conveyor.entrypoints.worker.heartbeat import HeartbeatLoop
from conveyor.entrypoints.worker.holding import HeldJob, HeldJobs
from conveyor.entrypoints.worker.outage import StoreOutage
from conveyor.entrypoints.worker.record import Recorder
from conveyor.entrypoints.worker.recovery import RecoveryLoop
from conveyor.entrypoints.worker.run import (
    Failed,
    Succeeded,
    TaskRunner,
    UnknownTask,
)
from conveyor.entrypoints.worker.timing import LoopTimer, Timer, wait_any

# After the grace period, store writes of the shutdown (releases, the last
# completions) are retried through an outage for at most this many seconds.
SHUTDOWN_WRITE_SECONDS = 10.0

# A slot whose handlers finish without waiting runs this many jobs in a row,
# then lets the event loop run the claim, heartbeat and flusher loops.
JOBS_PER_TURN = 32


class _Random:
    def random(self) -> float:
        return random.random()


class Worker:
    """Runs jobs from `queues` until request_stop() is called, then drains.

    Up to `concurrency` handlers run at once, and up to `prefetch` more claimed
    jobs wait for a slot. Those waiting jobs hold a lease and are released,
    not run, when the worker stops. Without a fixed `prefetch`, the buffer
    follows the measured job and claim times (see PrefetchSizer), between 0
    and `claim_batch` jobs. Results are written in batches of up to
    `flush_size` jobs (`claim_batch` unless given). `wakeups` is awaited while
    the queues are empty; without it the worker polls every `poll_seconds`.
    `timer` and `random` exist for tests.
    """

    def __init__(
        self,
        execute: ExecuteJobs,
        registry: TaskRegistry,
        worker_id: WorkerId,
        queues: Sequence[str],
        concurrency: int,
        claim_batch: int,
        poll_seconds: float,
        heartbeat_seconds: float,
        shutdown_grace_seconds: float,
        task_timeout_seconds: float,
        wakeups: Wakeups | None = None,
        *,
        prefetch: int | None = None,
        recovery_seconds: float = 5.0,
        flush_size: int | None = None,
        flush_delay: float = 0.005,
        timer: Timer | None = None,
        random: RandomSource | None = None,
        logger: Any = None,
    ) -> None:
        _check_settings(
            lease_seconds=execute.lease_duration.total_seconds(),
            queues=queues,
            concurrency=concurrency,
            claim_batch=claim_batch,
            poll_seconds=poll_seconds,
            heartbeat_seconds=heartbeat_seconds,
            shutdown_grace_seconds=shutdown_grace_seconds,
            task_timeout_seconds=task_timeout_seconds,
        )
        self.worker_id = worker_id
        self.queues = tuple(queues)
        self.concurrency = concurrency
        self._execute = execute
        self._registry = registry
        self._claim_batch = claim_batch
        self._prefetch = PrefetchSizer(
            concurrency,
            minimum=0,
            maximum=claim_batch,
            fixed=None if prefetch is None else max(0, prefetch),
        )
        self._grace = shutdown_grace_seconds
        self._task_timeout = task_timeout_seconds
        self._timer: Timer = timer or LoopTimer()
        self._random: RandomSource = random or _Random()
        base_logger = logger if logger is not None else structlog.get_logger()
        self._log = base_logger.bind(worker_id=worker_id)

        self._held = HeldJobs()
        self._ready: deque[HeldJob] = deque()
        # Running jobs and the slot task that runs each.
        self._running: dict[JobId, asyncio.Task[None]] = {}
        self._interrupted: list[HeldJob] = []
        # The tasks that run jobs, `concurrency` of them while the worker runs.
        self._slots: set[asyncio.Task[None]] = set()
        # One future per idle slot, resolved to wake that slot.
        self._idle_slots: deque[asyncio.Future[None]] = deque()

        self._stop = asyncio.Event()
        self._force = asyncio.Event()
        self._give_up = asyncio.Event()
        self._room_freed = asyncio.Event()
        self._no_running = asyncio.Event()
        self._no_running.set()
        self._ran = False

        self._claimer = ClaimLoop(
            execute=execute,
            worker_id=worker_id,
            queues=self.queues,
            poll_seconds=poll_seconds,
            wakeups=wakeups,
            timer=self._timer,
            outage=self._outage("claim"),
            wakeups_outage=self._outage("wakeups"),
            log=self._log,
            room=self._room,
            deliver=self._deliver,
            room_freed=self._room_freed,
            stop=self._stop,
            prefetch=self._prefetch,
            drained=self._queues_drained,
        )
        self._recorder = Recorder(
            execute=execute,
            held=self._held,
            timer=self._timer,
            log=self._log,
            outage=self._outage("write"),
            give_up=self._give_up,
            flush_size=claim_batch if flush_size is None else flush_size,
            flush_delay=flush_delay,
            retry_scheduled=self._claimer.expect_due,
        )
        self._heartbeat = HeartbeatLoop(
            execute=execute,
            held=self._held,
            interval=heartbeat_seconds,
            timer=self._timer,
            outage=self._outage("heartbeat"),
            log=self._log,
        )
        self._recovery = RecoveryLoop(
            execute=execute,
            worker_id=worker_id,
            interval=recovery_seconds,
            timer=self._timer,
            outage=self._outage("recovery"),
            log=self._log,
            queues=self.queues,
            retry_scheduled=self._claimer.expect_due,
        )
        self._runner: TaskRunner | None = None
        # The context of run()'s caller, copied for each job; set by run().
        self._job_context = contextvars.Context()

    @property
    def held_count(self) -> int:
        """Jobs whose lease this worker holds: prefetched, running or being written."""
        return len(self._held)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def prefetched_count(self) -> int:
        return len(self._ready)

    def request_stop(self) -> None:
        """Stop claiming and drain; a second call skips the rest of the grace period."""
        if not self._stop.is_set():
            self._log.info(
                "worker_stopping",
                running=len(self._running),
                prefetched=len(self._ready),
                grace_seconds=self._grace,
            )
            self._stop.set()
            self._wake_slots(len(self._idle_slots))
            return
        if not self._force.is_set():
            self._log.warning("worker_stop_forced", running=len(self._running))
            self._force.set()
            self._give_up.set()

    async def run(self) -> None:
        """Run until request_stop(), then drain and return."""
        if self._ran:
            raise RuntimeError("a Worker runs once; create a new one")
        self._ran = True
        self._job_context = contextvars.copy_context()
        executor = ThreadPoolExecutor(
            max_workers=self.concurrency, thread_name_prefix="conveyor-task"
        )
        self._runner = TaskRunner(
            registry=self._registry,
            worker_id=self.worker_id,
            default_timeout=self._task_timeout,
            executor=executor,
            timer=self._timer,
            log=self._log,
        )
        self._log.info(
            "worker_started",
            queues=list(self.queues),
            concurrency=self.concurrency,
            prefetch=self._prefetch.size,
            tasks=self._registry.names(),
        )

        loops = {
            "claim": self._claimer.run(),
            "heartbeat": self._heartbeat.run(),
            "recovery": self._recovery.run(),
            "flusher": self._recorder.run_flusher(),
        }
        tasks = {name: asyncio.create_task(loop) for name, loop in loops.items()}
        for name, task in tasks.items():
            task.add_done_callback(functools.partial(self._loop_ended, name))
        for _ in range(self.concurrency):
            self._start_slot()
        try:
            await self._stop.wait()
            await self._drain(tasks)
        finally:
            leftovers = [*tasks.values(), *self._slots]
            for task in leftovers:
                task.cancel()
            await asyncio.gather(*leftovers, return_exceptions=True)
            # NOTE: threads of sync handlers that are still running keep the
            # process alive at exit until they return; Python cannot stop them.
            executor.shutdown(wait=False, cancel_futures=True)

        self._log.info(
            "worker_stopped",
            queues=list(self.queues),
            concurrency=self.concurrency,
            threads_still_running=self._runner.abandoned_threads,
        )

    async def _drain(self, tasks: dict[str, asyncio.Task[None]]) -> None:
        """Shut down: stop claiming, release waiting jobs, let running ones finish."""
        stop_requested = self._timer.monotonic()
        give_up_timer = self._timer.call_later(
            self._grace + SHUTDOWN_WRITE_SECONDS, self._give_up.set
        )
        tasks["recovery"].cancel()

        # A claim that is in flight finishes, so that its jobs get released.
        await wait_any(
            [_done_event(tasks["claim"]), self._force], self._grace, self._timer
        )
        tasks["claim"].cancel()
        prefetched = list(self._ready)
        self._ready.clear()
        await self._recorder.release(prefetched, reason="worker stopping")

        remaining = self._grace - (self._timer.monotonic() - stop_requested)
        if self._running and remaining > 0:
            await wait_any([self._no_running, self._force], remaining, self._timer)
        await self._cancel_running()

        self._recorder.close()
        # A flusher that crashed was logged by _loop_ended; its jobs run again.
        await asyncio.gather(tasks["flusher"], return_exceptions=True)
        tasks["heartbeat"].cancel()
        give_up_timer.cancel()

    async def _cancel_running(self) -> None:
        """Cancel handlers that outlived the grace period and release their jobs."""
        left = list(self._running.values())
        if left:
            self._log.warning("jobs_interrupted", count=len(left))
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        # NOTE: a sync handler's thread runs on after its job is released, so
        # another worker may start the job while the thread still runs it.
        await self._recorder.release(
            self._interrupted, reason="shutdown grace period ended"
        )
        self._interrupted.clear()

    def _room(self) -> int:
        """Return how many jobs to claim now; 0 means wait for room."""
        if self._stop.is_set():
            return 0
        running = len(self._running)
        waiting = len(self._ready)
        prefetch = self._prefetch.size
        free = self.concurrency + prefetch - running - waiting
        if free <= 0:
            return 0
        # While every slot is busy, wait until the prefetch buffer is half
        # empty, so that a busy worker claims in batches, not job by job.
        if running >= self.concurrency and waiting > prefetch // 2:
            return 0
        return min(self._claim_batch, free)

    def _deliver(self, jobs: list[Job]) -> None:
        for job in jobs:
            self._ready.append(self._held.add(job))
        self._wake_slots(len(self._ready))

    def _wake_slots(self, count: int) -> None:
        """Wake up to `count` idle slots, so that one job wakes one slot."""
        for _ in range(min(count, len(self._idle_slots))):
            self._idle_slots.popleft().set_result(None)

    def _start_slot(self) -> None:
        slot = asyncio.create_task(self._run_slot(), name="conveyor-slot")
        self._slots.add(slot)
        slot.add_done_callback(self._slot_ended)

    def _slot_ended(self, slot: asyncio.Task[None]) -> None:
        """Replace a slot that ended while the worker runs, and log why it ended."""
        self._slots.discard(slot)
        if self._stop.is_set():
            return
        error = None if slot.cancelled() else slot.exception()
        self._log.error(
            "worker_slot_ended",
            reason="cancelled" if error is None else type(error).__name__,
            exc_info=error,
            note="a new slot replaces it",
        )
        self._start_slot()

    def _next_ready(self) -> HeldJob | None:
        """Take the next job to run from the prefetch buffer, if any."""
        while self._ready and not self._stop.is_set():
            held = self._ready.popleft()
            if not held.lost:
                return held
            # Another worker recovered it while it waited here.
            self._held.discard(held.job.id)
        return None

    async def _run_slot(self) -> None:
        """Run jobs from the prefetch buffer one after another until the stop.

        A slot task per unit of concurrency, rather than a task per job,
        saves creating and scheduling a task for every job, which cost about
        a fifth of the worker's CPU time with no-op handlers.
        """
        task = asyncio.current_task()
        assert task is not None
        in_a_row = 0
        while not self._stop.is_set():
            held = self._next_ready()
            if held is None:
                in_a_row = 0
                waiting = asyncio.get_running_loop().create_future()
                self._idle_slots.append(waiting)
                try:
                    await waiting
                finally:
                    if waiting in self._idle_slots:
                        # Cancelled while idle: no longer waiting to be woken.
                        self._idle_slots.remove(waiting)
                continue
            self._running[held.job.id] = task
            self._no_running.clear()
            await self._run_job(held)
            in_a_row += 1
            if in_a_row >= JOBS_PER_TURN:
                in_a_row = 0
                await asyncio.sleep(0)

    async def _run_job(self, held: HeldJob) -> None:
        assert self._runner is not None
        try:
            # Each job gets its own copy of the worker's context, so that
            # context variables a handler sets stay with its job.
            outcome = await self._runner.run(held, self._job_context.copy())
            match outcome:
                case Succeeded(result):
                    self._recorder.complete(held, result)
                case Failed(error):
                    await self._recorder.fail(held, error)
                case UnknownTask(error):
                    await self._recorder.give_up(held, error)
        except asyncio.CancelledError:
            if held.job.id in self._held:
                self._interrupted.append(held)
            raise
        except Exception as exc:
            self._log.error("job_crashed", **held.fields, exc_info=exc)
        finally:
            # Run here, not in a done callback, which would cost the event
            # loop one more callback per job.
            self._job_ended(held)

    def _job_ended(self, held: HeldJob) -> None:
        self._running.pop(held.job.id, None)
        if held.started_at is not None:
            self._prefetch.job_finished(self._timer.monotonic() - held.started_at)
        if not self._running:
            self._no_running.set()
            # Idle until a new job arrives: write the results now. While a
            # claim is in flight, more results follow, so keep batching.
            if not self._ready and self._claimer.waiting_for_jobs:
                self._recorder.flush_soon()
        if self._room() > 0:
            self._room_freed.set()

    def _queues_drained(self) -> None:
        # No job is left to run and none is coming: write the results now
        # rather than after the flush delay.
        if not self._running and not self._ready:
            self._recorder.flush_soon()

    def _loop_ended(self, name: str, task: asyncio.Task[None]) -> None:
        if task.cancelled() or task.exception() is None:
            return
        self._log.error("worker_loop_crashed", loop=name, exc_info=task.exception())
        self.request_stop()

    def _outage(self, operation: str) -> StoreOutage:
        return StoreOutage(operation, self._log, self._timer, self._random)


def _done_event(task: asyncio.Task[None]) -> asyncio.Event:
    event = asyncio.Event()
    if task.done():
        event.set()
    else:
        task.add_done_callback(lambda _: event.set())
    return event


def _check_settings(
    *,
    lease_seconds: float,
    queues: Sequence[str],
    concurrency: int,
    claim_batch: int,
    poll_seconds: float,
    heartbeat_seconds: float,
    shutdown_grace_seconds: float,
    task_timeout_seconds: float,
) -> None:
    if not queues:
        raise ValueError("a worker needs at least one queue")
    if concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency}")
    if claim_batch < 1:
        raise ValueError(f"claim_batch must be >= 1, got {claim_batch}")
    if poll_seconds <= 0:
        raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
    if shutdown_grace_seconds < 0:
        raise ValueError(
            f"shutdown_grace_seconds must be >= 0, got {shutdown_grace_seconds}"
        )
    if task_timeout_seconds <= 0:
        raise ValueError(
            f"task_timeout_seconds must be positive, got {task_timeout_seconds}"
        )
    if not 0 < heartbeat_seconds < lease_seconds:
        raise ValueError(
            f"heartbeat_seconds ({heartbeat_seconds}) must be positive and shorter "
            f"than the lease ({lease_seconds} s), or leases expire while jobs run"
        )
