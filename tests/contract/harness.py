"""What the contract suite needs from a store under test."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from conveyor.application.ports import JobRepository


class StoreHarness(Protocol):
    """A store plus control over the clock that store judges time by."""

    repository: JobRepository

    def advance(self, seconds: float) -> None:
        """Move the store's clock forward."""
        ...

    async def now(self) -> datetime:
        """Return the store's current time."""
        ...
