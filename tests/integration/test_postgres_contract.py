"""The contract suite against the PostgreSQL store."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from conveyor.adapters.postgres.repository import PostgresJobRepository
from tests.contract.suite import *


class PostgresHarness:
    """Moves the store's clock by shifting the database time it reads."""

    def __init__(self, repository: PostgresJobRepository) -> None:
        self.repository = repository

    def advance(self, seconds: float) -> None:
        self.repository.time_shift += timedelta(seconds=seconds)

    async def now(self) -> datetime:
        return await self.repository.now()


@pytest.fixture
def harness(repository: PostgresJobRepository) -> PostgresHarness:
    return PostgresHarness(repository)
