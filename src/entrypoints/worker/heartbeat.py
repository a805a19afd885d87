"""Extend the leases of every held job with one store call per interval."""

from __future__ import annotations

from typing import Any

from conveyor.application.executing import ExecuteJobs
from conveyor.entrypoints.worker.holding import HeldJobs
from conveyor.entrypoints.worker.outage import OUTAGE_ERRORS, StoreOutage
from conveyor.entrypoints.worker.timing import Timer


class HeartbeatLoop:
    """Every `interval` seconds, extends the leases of prefetched, running and
    buffered jobs, and flags those whose lease was lost (logged as lease_lost).

    A lost job's result is rejected by the store's fencing when it is written,
    so the worker lets a running handler finish instead of cancelling it.
    """

    def __init__(
        self,
        execute: ExecuteJobs,
        held: HeldJobs,
        interval: float,
        timer: Timer,
        outage: StoreOutage,
        log: Any,
    ) -> None:
        if interval <= 0:
            raise ValueError(f"heartbeat interval must be positive, got {interval}")
        self._execute = execute
        self._held = held
        self._interval = interval
        self._timer = timer
        self._outage = outage
        self._log = log

    async def run(self) -> None:
        """Beat until cancelled; after a store failure, try again sooner."""
        delay = self._interval
        while True:
            await self._timer.sleep(delay)
            delay = await self.beat()

    async def beat(self) -> float:
        """Extend the held leases once; return the seconds until the next beat."""
        leases = self._held.live_leases()
        if not leases:
            return self._interval
        try:
            extended = await self._execute.heartbeat(leases)
        except OUTAGE_ERRORS as exc:
            return min(self._interval, self._outage.failed(exc))
        except Exception:
            self._log.exception("heartbeat_failed", jobs=len(leases))
            return self._interval
        self._outage.succeeded()

        missing = [lease.job_id for lease in leases if lease.job_id not in extended]
        for held in self._held.mark_lost(missing):
            self._log.warning(
                "lease_lost",
                **held.fields,
                reason="the lease expired or another worker recovered the job",
            )
        return self._interval
