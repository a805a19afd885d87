"""Claim jobs in batches, as many as the worker has room for."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from conveyor.application.executing import ExecuteJobs
from conveyor.domain.job import Job, WorkerId
from conveyor.entrypoints.worker.outage import OUTAGE_ERRORS, StoreOutage
from conveyor.entrypoints.worker.timing import Timer, wait_any

# Claim this long after a retry's due time, so that the store, whose clock
# decides when a job is due, already counts it as due.
RETRY_WAKE_MARGIN_SECONDS = 0.005


class Wakeups(Protocol):
    """Notifications that new jobs are due (LISTEN/NOTIFY for PostgreSQL)."""

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Return True when notified within `timeout` seconds, False otherwise."""
        ...


class PrefetchSizer:
    """Sizes the prefetch buffer to the jobs a worker starts per claim round trip.

    While one claim is in flight, the buffer must feed the free slots, so it
    needs about concurrency * claim_seconds / job_seconds jobs; twice that
    leaves headroom. Short jobs thus get a deep buffer and few, large claims,
    while long jobs get a shallow one and do not sit leased in one worker
    while another is idle. Until both times are measured the buffer is
    `minimum`, and reset() forgets them after the queues ran dry, because the
    next jobs may take far longer than the last: a buffer grown on short jobs
    would let one worker claim hundreds of slow jobs while others idle. A
    fixed size turns the adaptation off.
    """

    # Weight of the newest sample in the moving averages.
    SMOOTHING = 0.1

    def __init__(
        self, concurrency: int, minimum: int, maximum: int, fixed: int | None = None
    ) -> None:
        if not 0 <= minimum <= maximum:
            raise ValueError(f"need 0 <= minimum <= maximum, got {minimum}, {maximum}")
        self._concurrency = concurrency
        self._minimum = minimum
        self._maximum = maximum
        self._fixed = fixed
        self._job_seconds: float | None = None
        self._claim_seconds: float | None = None
        self.size = fixed if fixed is not None else minimum

    def reset(self) -> None:
        """Forget the measured times and go back to the `minimum` buffer."""
        self._job_seconds = None
        self._claim_seconds = None
        if self._fixed is None:
            self.size = self._minimum

    def job_finished(self, seconds: float) -> None:
        self._job_seconds = self._average(self._job_seconds, seconds)
        self._resize()

    def claim_finished(self, seconds: float) -> None:
        self._claim_seconds = self._average(self._claim_seconds, seconds)
        self._resize()

    def _average(self, current: float | None, sample: float) -> float:
        if current is None:
            return sample
        return current + self.SMOOTHING * (sample - current)

    def _resize(self) -> None:
        if self._fixed is not None:
            return
        if self._job_seconds is None or self._claim_seconds is None:
            return
        job_seconds = max(self._job_seconds, 1e-6)
        needed = 2 * self._concurrency * self._claim_seconds / job_seconds
        self.size = min(self._maximum, max(self._minimum, math.ceil(needed)))


class ClaimLoop:
    """Claims until `stop` is set, then returns once the claim in flight is done.

    `room()` returns how many jobs the worker can take now. When it is zero the
    loop waits for `room_freed`. A claim that fills its limit is followed by
    another at once, because more jobs are probably due. A shorter one means
    the queues are drained, so the loop waits for a wakeup, for the next retry
    that this worker knows to be due (see expect_due) or for `poll_seconds`.
    """

    def __init__(
        self,
        execute: ExecuteJobs,
        worker_id: WorkerId,
        queues: Sequence[str],
        poll_seconds: float,
        wakeups: Wakeups | None,
        timer: Timer,
        outage: StoreOutage,
        wakeups_outage: StoreOutage,
        log: Any,
        room: Callable[[], int],
        deliver: Callable[[list[Job]], None],
        room_freed: asyncio.Event,
        stop: asyncio.Event,
        prefetch: PrefetchSizer,
        drained: Callable[[], None] = lambda: None,
    ) -> None:
        self._execute = execute
        self._worker_id = worker_id
        self._queues = tuple(queues)
        self._poll_seconds = poll_seconds
        self._wakeups = wakeups
        self._timer = timer
        self._outage = outage
        self._wakeups_outage = wakeups_outage
        self._log = log
        self._room = room
        self._deliver = deliver
        self._room_freed = room_freed
        self._stop = stop
        self._prefetch = prefetch
        # Called when a claim found the queues drained, before waiting.
        self._drained = drained
        # True while the loop waits for new jobs, not for room or a claim.
        self.waiting_for_jobs = False
        # Monotonic time at which a job of ours becomes due again, if sooner
        # than the next poll; set by expect_due().
        self._next_due: float | None = None
        self._rescheduled = asyncio.Event()

    def expect_due(self, seconds: float) -> None:
        """Claim again in `seconds` at the latest, because a retry is due then.

        Retries send no notification, so without this a retry with a short
        backoff would wait for the next poll.
        """
        due = self._timer.monotonic() + seconds + RETRY_WAKE_MARGIN_SECONDS
        if self._next_due is None or due < self._next_due:
            self._next_due = due
            self._rescheduled.set()

    async def run(self) -> None:
        while not self._stop.is_set():
            limit = self._room()
            if limit <= 0:
                self._room_freed.clear()
                await wait_any([self._room_freed, self._stop], None, self._timer)
                continue

            started = self._timer.monotonic()
            try:
                jobs = await self._execute.claim(self._worker_id, self._queues, limit)
            except OUTAGE_ERRORS as exc:
                delay = self._outage.failed(exc)
                await wait_any([self._stop], delay, self._timer)
                continue
            except Exception:
                self._log.exception("claim_failed", queues=self._queues)
                await wait_any([self._stop], self._poll_seconds, self._timer)
                continue
            self._outage.succeeded()
            self._prefetch.claim_finished(self._timer.monotonic() - started)

            if jobs:
                self._deliver(jobs)
            if len(jobs) < limit:
                self.waiting_for_jobs = True
                self._drained()
                try:
                    await self._wait_for_jobs()
                finally:
                    self.waiting_for_jobs = False
                # The jobs that come next may be of another kind; measure
                # them before claiming more than the free slots.
                self._prefetch.reset()

    async def _wait_for_jobs(self) -> None:
        """Wait for a wakeup, a known due retry or the poll interval."""
        while not self._stop.is_set():
            self._rescheduled.clear()
            seconds = self._idle_seconds()
            if seconds <= 0:
                return
            notified = False
            if self._wakeups is None:
                await wait_any([self._stop, self._rescheduled], seconds, self._timer)
            else:
                notified = await self._wait_for_notification(seconds)
            # An earlier due retry ends the wait early: wait again, for less.
            if notified or not self._rescheduled.is_set():
                self._forget_past_due()
                return

    def _idle_seconds(self) -> float:
        self._forget_past_due()
        if self._next_due is None:
            return self._poll_seconds
        return min(self._poll_seconds, self._next_due - self._timer.monotonic())

    def _forget_past_due(self) -> None:
        if self._next_due is not None and self._next_due <= self._timer.monotonic():
            self._next_due = None

    async def _wait_for_notification(self, seconds: float) -> bool:
        """Return True when a notification arrived within `seconds`."""
        assert self._wakeups is not None
        notified = asyncio.ensure_future(self._wakeups.wait(seconds))
        interrupted = asyncio.ensure_future(
            wait_any([self._stop, self._rescheduled], None, self._timer)
        )
        try:
            await asyncio.wait(
                {notified, interrupted}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            notified.cancel()
            interrupted.cancel()
        if not notified.done() or notified.cancelled():
            return False
        error = notified.exception()
        if error is None:
            self._wakeups_outage.succeeded()
            return notified.result()
        if not self._stop.is_set():
            # A broken LISTEN connection must not stop claiming: poll until
            # it is back.
            delay = max(self._wakeups_outage.failed(error), self._poll_seconds)
            await wait_any([self._stop], delay, self._timer)
        return False
