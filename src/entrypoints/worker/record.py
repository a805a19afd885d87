"""Write what became of each job: completions in batches, failures, releases.

Completions wait in a buffer that is written with one complete() call once it
contains `flush_size` results, its oldest result has waited `flush_delay`
seconds, or the worker has no job left to run (flush_soon). Until then the
job stays held, so heartbeats keep its lease. Each write logs one
`jobs_completed` line at INFO with the ids it completed, and one
`job_completed` line per job at DEBUG. If the
worker dies before the write, the lease expires and the job runs again, so a
buffered result can cause a re-run but never a lost job.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from conveyor.application.executing import ExecuteJobs, FailureOutcome
from conveyor.application.ports import Completion
from conveyor.domain.job import ErrorInfo, JsonValue
from conveyor.domain.states import JobState
from conveyor.entrypoints.logging import debug_enabled
from conveyor.entrypoints.worker.holding import HeldJob, HeldJobs
from conveyor.entrypoints.worker.outage import StoreOutage
from conveyor.entrypoints.worker.timing import Timer, wait_any

_RERUN_NOTE = "the job runs again once its lease expires"


class Recorder:
    def __init__(
        self,
        execute: ExecuteJobs,
        held: HeldJobs,
        timer: Timer,
        log: Any,
        outage: StoreOutage,
        give_up: asyncio.Event,
        flush_size: int,
        flush_delay: float,
        retry_scheduled: Callable[[float], None],
    ) -> None:
        if flush_size < 1:
            raise ValueError(f"flush_size must be >= 1, got {flush_size}")
        self._execute = execute
        self._held = held
        self._timer = timer
        self._log = log
        self._debug = debug_enabled(log)
        self._outage = outage
        # Set when the worker stops waiting for the store during shutdown.
        self._give_up = give_up
        self._flush_size = flush_size
        self._flush_delay = flush_delay
        # Called with the backoff in seconds of each job that will be retried.
        self._retry_scheduled = retry_scheduled
        self._buffer: list[tuple[HeldJob, JsonValue]] = []
        self._has_results = asyncio.Event()
        self._flush_now = asyncio.Event()
        self._closing = False

    def complete(self, held: HeldJob, result: JsonValue) -> None:
        """Queue a successful result for the next batched write."""
        held.finished_at = self._timer.monotonic()
        self._buffer.append((held, result))
        self._has_results.set()
        if len(self._buffer) >= self._flush_size:
            self._flush_now.set()

    def flush_soon(self) -> None:
        """Write the buffer without waiting for `flush_delay`, as the worker is idle.

        No more results are coming soon, so waiting would only delay the
        write and keep the jobs leased for longer.
        """
        if self._buffer:
            self._flush_now.set()

    async def run_flusher(self) -> None:
        """Write buffered completions until close() is called and the buffer is empty."""
        while True:
            if not self._buffer:
                if self._closing:
                    return
                self._has_results.clear()
                await self._has_results.wait()
                continue
            if len(self._buffer) < self._flush_size:
                await wait_any([self._flush_now], self._flush_delay, self._timer)
            await self._write_batch()

    def close(self) -> None:
        """Make the flusher write what is left at once, then return."""
        self._closing = True
        self._has_results.set()
        self._flush_now.set()

    async def _write_batch(self) -> None:
        entries = self._buffer[: self._flush_size]
        del self._buffer[: len(entries)]
        if len(self._buffer) < self._flush_size and not self._closing:
            self._flush_now.clear()
        batch = [held for held, _ in entries]
        for held in batch:
            held.writing = True
        completions = [Completion(held.lease, result) for held, result in entries]

        try:
            accepted = await self._outage.retry(
                lambda: self._execute.complete(completions), self._give_up
            )
        except Exception as exc:
            self._drop_unwritten(batch, exc)
            return

        written = []
        for held in batch:
            self._held.discard(held.job.id)
            if held.job.id in accepted:
                written.append(held.job.id)
                if self._debug:
                    self._log.debug(
                        "job_completed", **held.fields, duration_ms=_duration_ms(held)
                    )
            else:
                self._log_rejected(held, "completion")
        if written:
            # One INFO line per write rather than per job: formatting a line
            # for every job took about a fifth of a busy worker's CPU time.
            self._log.info("jobs_completed", count=len(written), job_ids=written)

    async def fail(self, held: HeldJob, error: ErrorInfo) -> None:
        """Record a failed attempt: FAILED with a retry delay, or DEAD."""
        await self._write_failure(
            held, error, lambda: self._execute.fail(held.job, error)
        )

    async def give_up(self, held: HeldJob, error: ErrorInfo) -> None:
        """Move the job straight to DEAD, for a failure that no retry can fix."""
        await self._write_failure(
            held, error, lambda: self._execute.give_up(held.job, error)
        )

    async def release(self, jobs: Sequence[HeldJob], reason: str) -> None:
        """Hand jobs back to PENDING without counting their attempt."""
        if not jobs:
            return
        for held in jobs:
            held.writing = True
        try:
            released = await self._outage.retry(
                lambda: self._execute.release([held.job for held in jobs]),
                self._give_up,
            )
        except Exception as exc:
            self._drop_unwritten(jobs, exc)
            return

        for held in jobs:
            self._held.discard(held.job.id)
            if held.job.id in released:
                self._log.info("job_released", **held.fields, reason=reason)
            else:
                self._log_rejected(held, "release")

    async def _write_failure(
        self,
        held: HeldJob,
        error: ErrorInfo,
        write: Callable[[], Awaitable[FailureOutcome]],
    ) -> None:
        held.finished_at = self._timer.monotonic()
        held.writing = True
        try:
            outcome = await self._outage.retry(write, self._give_up)
        except Exception as exc:
            self._drop_unwritten([held], exc)
            return
        self._held.discard(held.job.id)

        error_fields = {
            "error_type": error.type,
            "error": error.message,
            "duration_ms": _duration_ms(held),
        }
        if not outcome.applied:
            self._log_rejected(held, "failure")
        elif outcome.target is JobState.DEAD:
            self._log.error("job_dead", **held.fields, **error_fields)
        else:
            retry_in = outcome.retry_delay.total_seconds()
            self._log.warning(
                "job_failed",
                **held.fields,
                **error_fields,
                retry_in_seconds=round(retry_in, 3),
            )
            self._retry_scheduled(retry_in)

    def _log_rejected(self, held: HeldJob, write: str) -> None:
        # A heartbeat may have reported the loss already, so log it once.
        if held.lost:
            return
        held.lost = True
        self._log.warning(
            "lease_lost",
            **held.fields,
            rejected=write,
            reason="the lease expired or another worker recovered the job",
        )

    def _drop_unwritten(self, jobs: Sequence[HeldJob], error: BaseException) -> None:
        # Dropping the jobs stops their heartbeats. Their leases expire and a
        # recovery sweep schedules them again, so nothing is lost.
        for held in jobs:
            self._held.discard(held.job.id)
            self._log.error(
                "job_outcome_unwritten",
                **held.fields,
                error_type=type(error).__name__,
                error=str(error),
                note=_RERUN_NOTE,
            )

    def __len__(self) -> int:
        return len(self._buffer)


def _duration_ms(held: HeldJob) -> float | None:
    if held.started_at is None or held.finished_at is None:
        return None
    return round((held.finished_at - held.started_at) * 1000, 3)
