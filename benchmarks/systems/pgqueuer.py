"""PgQueuer: QueueManager instances on asyncpg connections, as its CLI runs them.

Run as a worker process: python -m benchmarks.systems.pgqueuer --dsn URL

A worker process runs `managers` QueueManagers, each on its own asyncpg
connection (PgQueuer's own benchmark tool runs several per process the same
way), on uvloop like `pgq run` does.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any, ClassVar

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from benchmarks import runner
from benchmarks.systems.base import NOOP_PAYLOAD, SUBMITTED_NS, Producer, System


class PgQueuerProducer(Producer):
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._queries = Queries(AsyncpgDriver(connection))
        self._noop = json.dumps(NOOP_PAYLOAD).encode()

    async def submit_noop(self) -> None:
        await self._queries.enqueue(runner.NOOP_TASK, self._noop)

    async def submit_noop_batch(self, count: int) -> None:
        await self._queries.enqueue(
            [runner.NOOP_TASK] * count, [self._noop] * count, [0] * count
        )

    async def submit_probe(self, submitted_ns: int) -> None:
        payload = json.dumps({SUBMITTED_NS: submitted_ns}).encode()
        await self._queries.enqueue(runner.PROBE_TASK, payload)

    async def close(self) -> None:
        await self._connection.close()


class PgQueuer(System):
    name = "pgqueuer"
    worker_module = "benchmarks.systems.pgqueuer"
    defaults: ClassVar[dict[str, Any]] = {
        # Jobs per dequeue statement (QueueManager.run batch_size).
        "batch_size": 500,
        # QueueManagers per process, each with its own connection.
        "managers": 1,
    }
    tables = ("pgqueuer", "pgqueuer_log", "pgqueuer_statistics")

    async def install(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await Queries(AsyncpgDriver(connection)).install()
        finally:
            await connection.close()

    async def open_producer(self) -> Producer:
        return PgQueuerProducer(await asyncpg.connect(self.dsn))

    async def unfinished(self, connection: asyncpg.Connection, after_id: int) -> int:
        # PgQueuer deletes a job when it succeeds; what is left is unfinished.
        count: int = await connection.fetchval(
            "SELECT count(*) FROM pgqueuer WHERE id > $1", after_id
        )
        return count


class PgQueuerWorker:
    def __init__(self, dsn: str, params: dict[str, Any]) -> None:
        self._dsn = dsn
        self._batch_size = int(params["batch_size"])
        self._managers_wanted = int(params["managers"])
        self._managers: list[QueueManager] = []

    async def prepare(self) -> None:
        for _ in range(self._managers_wanted):
            connection = await asyncpg.connect(self._dsn)
            manager = QueueManager(Queries(AsyncpgDriver(connection)))
            manager.entrypoint(runner.NOOP_TASK)(_noop)
            manager.entrypoint(runner.PROBE_TASK)(_probe)
            self._managers.append(manager)

    async def run(self) -> None:
        await asyncio.gather(
            *(
                manager.run(
                    batch_size=self._batch_size,
                    dequeue_timeout=timedelta(seconds=30),
                )
                for manager in self._managers
            )
        )

    async def stop(self) -> None:
        for manager in self._managers:
            manager.shutdown.set()


async def _noop(job: Job) -> None:
    runner.PROBE.noop()


async def _probe(job: Job) -> None:
    assert job.payload is not None
    runner.PROBE.probe(json.loads(job.payload)[SUBMITTED_NS])


def main() -> None:
    dsn, params = runner.parse_args()
    runner.serve(lambda: PgQueuerWorker(dsn, params), use_uvloop=True)


if __name__ == "__main__":
    main()
