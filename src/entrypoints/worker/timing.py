"""Time for the worker: sleeps, timers and a monotonic clock.

The worker reads time only through a Timer, except inside Wakeups.wait(),
so tests can drive it with a ManualTimer and never wait on the wall clock.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from conveyor.adapters.clock import FakeClock


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Timer(Protocol):
    def monotonic(self) -> float:
        """Return seconds on a clock that never goes back."""
        ...

    async def sleep(self, seconds: float) -> None: ...

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        """Run `callback` on the event loop after `seconds`, unless cancelled first."""
        ...


class LoopTimer:
    """Real time, as the asyncio event loop keeps it."""

    def monotonic(self) -> float:
        # The default event loop's time() is time.monotonic(); calling it
        # directly skips a get_running_loop() per call on the hot path.
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        return asyncio.get_running_loop().call_later(seconds, callback)


@dataclass(order=True)
class _Scheduled:
    due: float
    sequence: int
    callback: Callable[[], object] = field(compare=False)
    cancelled: bool = field(default=False, compare=False)

    def cancel(self) -> None:
        self.cancelled = True


class ManualTimer:
    """Virtual time for tests: sleeps and timers fire only inside advance().

    With a FakeClock, advance() moves that clock by the same amount, so the
    in-memory store judges leases by the same time as the worker.
    """

    def __init__(self, clock: FakeClock | None = None, yields: int = 20) -> None:
        self._clock = clock
        self._yields = yields
        self._now = 0.0
        self._queue: list[_Scheduled] = []
        self._sequence = itertools.count()

    def monotonic(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not future.done():
                future.set_result(None)

        handle = self.call_later(seconds, wake)
        try:
            await future
        finally:
            handle.cancel()

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Cancellable:
        entry = _Scheduled(
            self._now + max(0.0, seconds), next(self._sequence), callback
        )
        heapq.heappush(self._queue, entry)
        return entry

    async def advance(self, seconds: float) -> None:
        """Move time forward, firing due sleeps and timers in order.

        After each one fires, the event loop runs a few rounds so that the
        tasks it woke can react (and schedule new timers) before the next.
        """
        if seconds < 0:
            raise ValueError(f"time does not go back; got {seconds}")
        target = self._now + seconds
        await self.settle()
        while self._queue and self._queue[0].due <= target:
            entry = heapq.heappop(self._queue)
            if entry.cancelled:
                continue
            self._move_to(entry.due)
            entry.callback()
            await self.settle()
        self._move_to(target)
        await self.settle()

    async def settle(self) -> None:
        """Let ready tasks run for a few event loop rounds without moving time."""
        for _ in range(self._yields):
            await asyncio.sleep(0)

    def _move_to(self, moment: float) -> None:
        step = moment - self._now
        if step <= 0:
            return
        self._now = moment
        if self._clock is not None:
            self._clock.advance(step)


async def wait_any(
    events: Iterable[asyncio.Event], seconds: float | None, timer: Timer
) -> None:
    """Return once any of the events is set, or after `seconds` (None: no limit)."""
    waiting = list(events)
    if not waiting and seconds is None:
        raise ValueError("wait_any needs an event or a time limit")
    if any(event.is_set() for event in waiting):
        return
    tasks: list[asyncio.Future[object]] = [
        asyncio.ensure_future(event.wait()) for event in waiting
    ]
    if seconds is not None:
        tasks.append(asyncio.ensure_future(timer.sleep(seconds)))
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


class Deadlines:
    """Timeouts of running jobs, watched by one timer set for the earliest.

    A timer per job would cost a timer handle and a heap entry for every
    job, mostly cancelled unused. Here a job costs one dict entry. The timer
    fires at the earliest deadline known when it was set, calls back every
    entry whose deadline has passed and is set again for the earliest left.
    Entries are running jobs only, so each sweep reads at most `concurrency`.
    """

    def __init__(self, timer: Timer) -> None:
        self._timer = timer
        self._entries: dict[int, tuple[float, Callable[[], object]]] = {}
        self._keys = itertools.count()
        self._handle: Cancellable | None = None
        self._due = math.inf

    def add(self, seconds: float, callback: Callable[[], object]) -> int:
        """Call `callback` after `seconds` unless remove() comes first; return its key."""
        deadline = self._timer.monotonic() + seconds
        key = next(self._keys)
        self._entries[key] = (deadline, callback)
        if deadline < self._due:
            self._set_timer(deadline)
        return key

    def remove(self, key: int) -> None:
        # The timer stays set; a sweep that finds nothing due just sets it again.
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)

    def _set_timer(self, deadline: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._due = deadline
        self._handle = self._timer.call_later(
            deadline - self._timer.monotonic(), self._sweep
        )

    def _sweep(self) -> None:
        self._handle = None
        self._due = math.inf
        now = self._timer.monotonic()
        due = [key for key, (deadline, _) in self._entries.items() if deadline <= now]
        for key in due:
            _, callback = self._entries.pop(key)
            callback()
        if self._entries:
            self._set_timer(min(deadline for deadline, _ in self._entries.values()))
