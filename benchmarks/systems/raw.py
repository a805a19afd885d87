"""Raw SQL baseline: the least a PostgreSQL queue does, written with asyncpg.

One table, a partial index on pending rows, a `FOR UPDATE SKIP LOCKED`
claim of a batch and one UPDATE completing the batch. No leases, no
heartbeats, no attempt records, no retries: a worker that dies leaves its
claimed rows running forever. It shows what PostgreSQL itself allows here.

Run as a worker process: python -m benchmarks.systems.raw --dsn URL
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, ClassVar

import asyncpg

from benchmarks import runner
from benchmarks.systems.base import NOOP_PAYLOAD, SUBMITTED_NS, Producer, System

CHANNEL = "raw_jobs"

SCHEMA = """
CREATE TABLE raw_jobs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task text NOT NULL,
    payload jsonb NOT NULL,
    -- 0 pending, 1 running, 2 done
    status smallint NOT NULL DEFAULT 0
);
-- The claim reads only this index; finished rows leave it.
CREATE INDEX raw_jobs_pending ON raw_jobs (id) WHERE status = 0;
"""

INSERT_ONE = "INSERT INTO raw_jobs (task, payload) VALUES ($1, $2)"

INSERT_MANY = """
INSERT INTO raw_jobs (task, payload)
SELECT $1, payload FROM unnest($2::jsonb[]) AS payload
"""

# The latency probe wakes idle workers with NOTIFY, sent at commit.
INSERT_AND_NOTIFY = """
WITH job AS (
    INSERT INTO raw_jobs (task, payload) VALUES ($1, $2) RETURNING id
)
SELECT pg_notify('raw_jobs', '') FROM job
"""

CLAIM = """
UPDATE raw_jobs SET status = 1
WHERE id IN (
    SELECT id FROM raw_jobs
    WHERE status = 0
    ORDER BY id
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id, task, payload
"""

COMPLETE = "UPDATE raw_jobs SET status = 2 WHERE id = ANY($1::bigint[])"

ADD_FINISHED = """
INSERT INTO raw_jobs (task, payload, status)
SELECT 'bench_noop', '{}'::jsonb, 2 FROM generate_series(1, $1)
"""


class RawProducer(Producer):
    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._noop = json.dumps(NOOP_PAYLOAD)

    async def submit_noop(self) -> None:
        await self._connection.execute(INSERT_ONE, runner.NOOP_TASK, self._noop)

    async def submit_noop_batch(self, count: int) -> None:
        await self._connection.execute(
            INSERT_MANY, runner.NOOP_TASK, [self._noop] * count
        )

    async def submit_probe(self, submitted_ns: int) -> None:
        payload = json.dumps({SUBMITTED_NS: submitted_ns})
        await self._connection.execute(INSERT_AND_NOTIFY, runner.PROBE_TASK, payload)

    async def close(self) -> None:
        await self._connection.close()


class Raw(System):
    name = "raw"
    worker_module = "benchmarks.systems.raw"
    defaults: ClassVar[dict[str, Any]] = {
        # Rows claimed per statement, and claim loops (connections) per process.
        "batch_size": 200,
        "loops": 2,
    }
    tables = ("raw_jobs",)
    keeps_finished_rows = True

    async def install(self) -> None:
        connection = await asyncpg.connect(self.dsn)
        try:
            await connection.execute(SCHEMA)
        finally:
            await connection.close()

    async def open_producer(self) -> Producer:
        return RawProducer(await asyncpg.connect(self.dsn))

    async def unfinished(self, connection: asyncpg.Connection, after_id: int) -> int:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM raw_jobs WHERE id > $1 AND status < 2", after_id
        )
        return count

    async def add_finished(self, connection: asyncpg.Connection, count: int) -> None:
        await connection.execute(ADD_FINISHED, count)


class RawWorker:
    def __init__(self, dsn: str, params: dict[str, Any]) -> None:
        self._dsn = dsn
        self._batch_size = int(params["batch_size"])
        self._loops = int(params["loops"])
        self._connections: list[asyncpg.Connection] = []
        self._listener: asyncpg.Connection | None = None
        self._wake = asyncio.Event()
        self._stopping = False

    async def prepare(self) -> None:
        self._connections = [
            await asyncpg.connect(self._dsn) for _ in range(self._loops)
        ]
        self._listener = await asyncpg.connect(self._dsn)
        await self._listener.add_listener(CHANNEL, self._notified)

    def _notified(self, *_: object) -> None:
        self._wake.set()

    async def run(self) -> None:
        await asyncio.gather(*(self._claim_loop(c) for c in self._connections))

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def _claim_loop(self, connection: asyncpg.Connection) -> None:
        claim = await connection.prepare(CLAIM)
        complete = await connection.prepare(COMPLETE)
        while not self._stopping:
            # Cleared before the claim, so a NOTIFY during it is not lost.
            self._wake.clear()
            rows = await claim.fetch(self._batch_size)
            if not rows:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                continue

            done = []
            for row in rows:
                _handle(row["task"], json.loads(row["payload"]))
                done.append(row["id"])
            await complete.fetch(done)


def _handle(task: str, payload: dict[str, Any]) -> None:
    if task == runner.PROBE_TASK:
        runner.PROBE.probe(payload[SUBMITTED_NS])
    else:
        runner.PROBE.noop()


def main() -> None:
    dsn, params = runner.parse_args()
    runner.serve(lambda: RawWorker(dsn, params), use_uvloop=True)


if __name__ == "__main__":
    main()
