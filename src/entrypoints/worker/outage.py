"""Backoff and rate-limited warnings while the job store cannot be reached."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from conveyor.application.ports import RandomSource
from conveyor.domain.errors import StoreUnavailable
from conveyor.domain.retry import RetryPolicy
from conveyor.entrypoints.worker.timing import Timer, wait_any

T = TypeVar("T")

# Errors that mean "the store is unreachable, try again later". Stores map
# their driver's errors to StoreUnavailable; OSError covers connection
# failures that escape that mapping (refused, reset, timed out).
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (StoreUnavailable, OSError)

# 0.1 s after the first failure, doubling up to 5 s, each shortened by up to 20 %.
OUTAGE_BACKOFF = RetryPolicy(base_delay=0.1, factor=2.0, max_delay=5.0, jitter=0.2)

# A loop that keeps failing logs one store_unavailable line per this many seconds.
LOG_EVERY_SECONDS = 30.0


class StoreGaveUp(Exception):
    """A store call was abandoned because the worker stopped waiting for the store."""


class StoreOutage:
    """Consecutive store failures of one worker loop, with backoff and logging.

    `failed` returns how long to wait before the next try and logs a
    store_unavailable warning at most once per LOG_EVERY_SECONDS; `succeeded`
    logs store_reconnected after an outage and resets the count.
    """

    def __init__(
        self,
        operation: str,
        log: Any,
        timer: Timer,
        random: RandomSource,
        backoff: RetryPolicy = OUTAGE_BACKOFF,
        log_every: float = LOG_EVERY_SECONDS,
    ) -> None:
        self.operation = operation
        self._log = log
        self._timer = timer
        self._random = random
        self._backoff = backoff
        self._log_every = log_every
        self.failures = 0
        self._outage_started = 0.0
        self._last_logged: float | None = None

    def failed(self, error: BaseException) -> float:
        """Count a failure and return the seconds to wait before trying again."""
        now = self._timer.monotonic()
        self.failures += 1
        if self.failures == 1:
            self._outage_started = now
        delay = self._backoff.backoff_seconds(self.failures, self._random.random())

        if self._last_logged is None or now - self._last_logged >= self._log_every:
            self._log.warning(
                "store_unavailable",
                operation=self.operation,
                failures=self.failures,
                error_type=type(error).__name__,
                error=str(error),
                retry_in_seconds=round(delay, 3),
            )
            self._last_logged = now
        return delay

    def succeeded(self) -> None:
        if self.failures == 0:
            return
        self._log.info(
            "store_reconnected",
            operation=self.operation,
            failures=self.failures,
            outage_seconds=round(self._timer.monotonic() - self._outage_started, 3),
        )
        self.failures = 0
        self._last_logged = None

    async def retry(
        self,
        operation: Callable[[], Awaitable[T]],
        give_up: asyncio.Event | None = None,
    ) -> T:
        """Await operation() until it succeeds, backing off while the store is down.

        Errors other than OUTAGE_ERRORS propagate at once. With `give_up`, the
        retries end with StoreGaveUp once that event is set; the first try is
        always made.
        """
        while True:
            try:
                result = await operation()
            except OUTAGE_ERRORS as exc:
                delay = self.failed(exc)
                if give_up is None:
                    await self._timer.sleep(delay)
                    continue
                await wait_any([give_up], delay, self._timer)
                if give_up.is_set():
                    raise StoreGaveUp(
                        f"{self.operation}: gave up after {self.failures} failed tries"
                    ) from exc
                continue
            self.succeeded()
            return result
