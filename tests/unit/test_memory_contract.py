"""The contract suite against the in-memory store."""

from __future__ import annotations

from datetime import datetime

import pytest

from conveyor.adapters.clock import FakeClock
from conveyor.adapters.memory import InMemoryJobRepository
from tests.contract.suite import *


class MemoryHarness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.repository = InMemoryJobRepository(self.clock)

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    async def now(self) -> datetime:
        return self.clock.now()


@pytest.fixture
def harness() -> MemoryHarness:
    return MemoryHarness()
