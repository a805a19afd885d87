"""Clocks, token sources and random sources behind the application ports."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

from conveyor.domain.job import LeaseToken


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that moves only through advance(), for deterministic tests."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2030, 1, 1, tzinfo=UTC)
        if self._now.utcoffset() is None:
            raise ValueError("FakeClock needs a timezone-aware start time")

    def now(self) -> datetime:
        return self._now

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError(f"a clock does not go back; got {step}")
        self._now += step
        return self._now


class UuidTokens:
    def new_lease_token(self) -> LeaseToken:
        return LeaseToken(uuid.uuid4())


class SequentialTokens:
    """Predictable lease tokens for tests: 00000000-...-000000000001, ...2, ..."""

    def __init__(self) -> None:
        self._next = 1

    def new_lease_token(self) -> LeaseToken:
        token = LeaseToken(uuid.UUID(int=self._next))
        self._next += 1
        return token


class SystemRandom:
    def __init__(self) -> None:
        self._random = random.Random()

    def random(self) -> float:
        return self._random.random()


class FixedRandom:
    """Always returns the same value, so backoff delays are exact in tests."""

    def __init__(self, value: float = 0.0) -> None:
        if not 0 <= value < 1:
            raise ValueError(f"value must be within [0, 1), got {value}")
        self.value = value

    def random(self) -> float:
        return self.value
