"""The interface between the benchmarked systems and the measurements.

A system is a job queue installed in its own database. The harness enqueues
through a Producer in its own process and runs workers as separate
processes (`python -m <worker_module>`, see benchmarks/runner.py).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import asyncpg

# The payload of a no-op job, and the key of a latency probe's submit time.
NOOP_PAYLOAD: dict[str, Any] = {}
SUBMITTED_NS = "submitted_ns"


class Producer(ABC):
    """Submits jobs from the harness process; one open connection or client."""

    @abstractmethod
    async def submit_noop(self) -> None: ...

    @abstractmethod
    async def submit_noop_batch(self, count: int) -> None:
        """Submit `count` no-op jobs in one call of the system's batch API."""

    @abstractmethod
    async def submit_probe(self, submitted_ns: int) -> None:
        """Submit one latency probe job carrying its submit time."""

    @abstractmethod
    async def close(self) -> None: ...


class System(ABC):
    name: ClassVar[str]
    worker_module: ClassVar[str]
    # Settings of this system's workers; `--param NAME.KEY=VALUE` replaces them.
    defaults: ClassVar[dict[str, Any]] = {}
    # Tables emptied between measurements.
    tables: ClassVar[tuple[str, ...]] = ()
    # Fraction of the throughput job count this system drains. A system too
    # slow to drain the full count within the run's time gets a smaller one.
    throughput_share: ClassVar[float] = 1.0

    def __init__(self, dsn: str, params: dict[str, Any] | None = None) -> None:
        unknown = set(params or {}) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown {self.name} settings {sorted(unknown)}; "
                f"known: {sorted(self.defaults)}"
            )
        self.dsn = dsn
        self.params: dict[str, Any] = {**self.defaults, **(params or {})}

    @abstractmethod
    async def install(self) -> None:
        """Create the system's schema in its empty database."""

    @abstractmethod
    async def open_producer(self) -> Producer: ...

    def enqueue_paths(self) -> list[tuple[str, Callable[[], Awaitable[Producer]]]]:
        """Ways to submit from Python: (label, opener); "" is the main one."""
        return [("", self.open_producer)]

    @abstractmethod
    async def unfinished(self, connection: asyncpg.Connection, after_id: int) -> int:
        """Count unfinished (pending or running) jobs whose id is above `after_id`.

        Bounding by id keeps the check to the jobs of one drain, however
        many finished rows the table holds.
        """

    async def last_id(self, connection: asyncpg.Connection) -> int:
        """Return the highest job id so far; jobs added later have higher ids."""
        last: int = await connection.fetchval(
            f"SELECT coalesce(max(id), 0) FROM {self.tables[0]}"
        )
        return last

    async def reset(self) -> None:
        """Empty the system's tables so each measurement starts alike."""
        connection = await asyncpg.connect(self.dsn)
        try:
            names = ", ".join(self.tables)
            await connection.execute(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
        finally:
            await connection.close()

    async def fill(self, count: int, batch_size: int = 1_000) -> None:
        """Add `count` pending no-op jobs through the system's batch API."""
        producer = await self.open_producer()
        try:
            remaining = count
            while remaining > 0:
                size = min(batch_size, remaining)
                await producer.submit_noop_batch(size)
                remaining -= size
        finally:
            await producer.close()

    async def analyze(self) -> None:
        """Refresh planner statistics; this server may run without autovacuum."""
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute("ANALYZE")
        finally:
            await connection.close()

    # Whether the system serves an HTTP API to submit jobs (conveyor only).
    has_http_api: ClassVar[bool] = False
    # Whether the claim measurement also times the store alone (conveyor only).
    has_store_loop: ClassVar[bool] = False
    # Whether add_finished is implemented: the claim-rate measurement needs it.
    keeps_finished_rows: ClassVar[bool] = False

    async def add_finished(self, connection: asyncpg.Connection, count: int) -> None:
        """Insert `count` rows of jobs that finished, as the system leaves them."""
        raise NotImplementedError(f"{self.name} keeps no finished rows")

    def throughput_jobs(self, jobs: int) -> int:
        return max(1, int(jobs * self.throughput_share))

    def worker_args(self) -> list[str]:
        return ["--dsn", self.dsn, "--params", json.dumps(self.params)]

    def worker_env(self) -> dict[str, str]:
        return {}

    def describe(self) -> str:
        """Return the worker settings in use, for the report."""
        return ", ".join(f"{key}={value}" for key, value in self.params.items())
