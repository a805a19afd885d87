"""Retry policy: exponential backoff with a cap and jitter."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta


@dataclass(frozen=True, slots=True)
class RetryAt:
    """Run the job again once `delay` has passed."""

    delay: timedelta


@dataclass(frozen=True, slots=True)
class GiveUp:
    """Move the job to DEAD."""

    reason: str


RetryDecision = RetryAt | GiveUp


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Backoff after failed attempt n: min(max_delay, base_delay * factor**(n-1)).

    `jitter` is the fraction of that delay that is randomised away: with
    jitter 0.2 and a random value r in [0, 1), the wait is delay * (1 - 0.2 * r).
    Jitter spreads out retries of jobs that failed together.
    """

    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 3600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if not self.base_delay >= 0:
            raise ValueError(f"base_delay must be >= 0, got {self.base_delay}")
        if not self.factor >= 1:
            raise ValueError(f"factor must be >= 1, got {self.factor}")
        if not self.max_delay >= self.base_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must be >= base_delay ({self.base_delay})"
            )
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def backoff_seconds(self, attempt: int, random_value: float) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        if attempt < 1:
            raise ValueError(f"attempt must be >= 1, got {attempt}")
        if not 0 <= random_value < 1:
            raise ValueError(f"random_value must be within [0, 1), got {random_value}")

        delay = self._capped_exponential(attempt - 1)
        return delay * (1 - self.jitter * random_value)

    def _capped_exponential(self, exponent: int) -> float:
        # Compare logarithms first so that attempt 10**9 neither overflows a
        # float nor spends time computing a power that the cap discards.
        if self.base_delay == 0:
            return 0.0
        if self.factor == 1:
            return self.base_delay
        headroom = math.log(self.max_delay / self.base_delay)
        if exponent * math.log(self.factor) >= headroom:
            return self.max_delay
        return min(self.max_delay, self.base_delay * self.factor**exponent)

    def decide(
        self, attempt: int, max_attempts: int, random_value: float
    ) -> RetryDecision:
        """Decide what follows failed attempt `attempt` out of `max_attempts`."""
        if attempt >= max_attempts:
            return GiveUp(
                f"attempt {attempt} of {max_attempts} failed; no attempts left"
            )
        seconds = self.backoff_seconds(attempt, random_value)
        return RetryAt(timedelta(seconds=seconds))
