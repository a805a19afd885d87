"""Sweep for expired leases of any worker and count them as failed attempts."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from conveyor.application.executing import ExecuteJobs, Recovery
from conveyor.domain.job import WorkerId
from conveyor.domain.states import JobState
from conveyor.entrypoints.worker.outage import OUTAGE_ERRORS, StoreOutage
from conveyor.entrypoints.worker.timing import Timer

# Jobs recovered per store call; a sweep repeats the call while batches are full.
SWEEP_BATCH = 100


class RecoveryLoop:
    """Runs a sweep at start and then every `interval` seconds.

    Every worker sweeps, so the jobs of a crashed worker are recovered while
    any worker is alive. The store lets only one sweep change each job.
    """

    def __init__(
        self,
        execute: ExecuteJobs,
        worker_id: WorkerId,
        interval: float,
        timer: Timer,
        outage: StoreOutage,
        log: Any,
        queues: Collection[str],
        retry_scheduled: Callable[[float], None],
    ) -> None:
        if interval <= 0:
            raise ValueError(f"recovery interval must be positive, got {interval}")
        self._execute = execute
        self._worker_id = worker_id
        self._interval = interval
        self._timer = timer
        self._outage = outage
        self._log = log
        self._queues = frozenset(queues)
        # Called with the backoff of each recovered job of this worker's queues.
        self._retry_scheduled = retry_scheduled

    async def run(self) -> None:
        while True:
            delay = await self.sweep()
            await self._timer.sleep(delay)

    async def sweep(self) -> float:
        """Recover every expired lease; return the seconds until the next sweep."""
        recovered: list[Recovery] = []
        try:
            while True:
                batch = await self._execute.recover_expired(SWEEP_BATCH)
                recovered.extend(batch)
                if len(batch) < SWEEP_BATCH:
                    break
        except OUTAGE_ERRORS as exc:
            self._report(recovered)
            return min(self._interval, self._outage.failed(exc))
        except Exception:
            self._report(recovered)
            self._log.exception("recovery_sweep_failed")
            return self._interval
        self._outage.succeeded()
        self._report(recovered)
        return self._interval

    def _report(self, recovered: list[Recovery]) -> None:
        # A sweep that found nothing stays silent.
        if not recovered:
            return
        for recovery in recovered:
            self._report_expiry(recovery)
        self._log.info(
            "jobs_recovered",
            count=len(recovered),
            job_ids=[recovery.job.id for recovery in recovered],
        )

    def _report_expiry(self, recovery: Recovery) -> None:
        job = recovery.job
        fields = {
            "job_id": job.id,
            "task": job.task,
            "queue": job.queue,
            "attempt": job.attempt,
            # The worker that held the lease; this worker is recovered_by.
            "worker_id": job.worker_id,
            "recovered_by": self._worker_id,
            "state": recovery.target.value,
        }
        if recovery.target is JobState.DEAD:
            self._log.error("lease_expired", **fields, max_attempts=job.max_attempts)
            return
        retry_in = recovery.retry_delay.total_seconds()
        self._log.warning(
            "lease_expired", **fields, retry_in_seconds=round(retry_in, 3)
        )
        if job.queue in self._queues:
            self._retry_scheduled(retry_in)
