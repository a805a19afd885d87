"""Claim jobs in batches, as many as the worker has room for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from conveyor.application.executing import ExecuteJobs
from conveyor.domain.job import Job, WorkerId
from conveyor.entrypoints.worker.outage import OUTAGE_ERRORS, StoreOutage
from conveyor.entrypoints.worker.timing import Timer, wait_any


class Wakeups(Protocol):
    """Notifications that new jobs are due (LISTEN/NOTIFY for PostgreSQL)."""

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Return True when notified within `timeout` seconds, False otherwise."""
        ...


class ClaimLoop:
    """Claims until `stop` is set, then returns; an in-flight claim always finishes.

    `room()` says how many jobs the worker can take now. When it is zero the
    loop waits for `room_freed`. A claim that fills its limit is followed by
    another at once, because more jobs are probably due. A shorter one means
    the queues are drained, so the loop waits for a wakeup or `poll_seconds`.
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

    async def run(self) -> None:
        while not self._stop.is_set():
            limit = self._room()
            if limit <= 0:
                self._room_freed.clear()
                await wait_any([self._room_freed, self._stop], None, self._timer)
                continue

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

            if jobs:
                self._deliver(jobs)
            if len(jobs) < limit:
                await self._wait_for_jobs()

    async def _wait_for_jobs(self) -> None:
        if self._wakeups is None:
            await wait_any([self._stop], self._poll_seconds, self._timer)
            return
        notified = asyncio.ensure_future(self._wakeups.wait(self._poll_seconds))
        stopped = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({notified, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            notified.cancel()
            stopped.cancel()
        if not notified.done() or notified.cancelled():
            return
        error = notified.exception()
        if error is None:
            self._wakeups_outage.succeeded()
            return
        if self._stop.is_set():
            return
        # A broken LISTEN connection must not stop claiming: poll until it is back.
        delay = max(self._wakeups_outage.failed(error), self._poll_seconds)
        await wait_any([self._stop], delay, self._timer)
