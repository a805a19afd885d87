"""conveyor: its real worker (run_worker) and its Python submit path (open_queue).

Run as a worker process: python -m benchmarks.systems.conveyor --dsn URL

The worker process does what `conveyor worker` does: settings from the
CONVEYOR_* environment, logging configured by configure_logging, the
container, and run_worker with its signal handlers. The benchmark only adds
the database URL and the task module benchmarks.conveyor_tasks. Leases,
heartbeats, attempt records and fencing are always on. `--param
conveyor.NAME=VALUE` sets CONVEYOR_NAME for the workers, for experiments.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
from typing import Any

import asyncpg
import sqlalchemy as sa

from benchmarks import runner
from benchmarks.systems.base import NOOP_PAYLOAD, SUBMITTED_NS, Producer, System
from conveyor.adapters.postgres.migrate import upgrade
from conveyor.domain.job import JobRequest
from conveyor.entrypoints.client import JobQueue, open_queue
from conveyor.entrypoints.config import Settings

TASK_MODULE = "benchmarks.conveyor_tasks"
SETTING_NAMES = frozenset(field.name for field in dataclasses.fields(Settings))

# Connections the worker uses at once: claim, completion flush, heartbeat,
# recovery. Opened before `go`, so pool growth stays outside the clock.
WARM_CONNECTIONS = 4


def worker_environment(dsn: str, params: dict[str, Any]) -> dict[str, str]:
    env = {"CONVEYOR_DATABASE_URL": dsn, "CONVEYOR_TASK_MODULES": TASK_MODULE}
    for name, value in params.items():
        env[f"CONVEYOR_{name.upper()}"] = str(value)
    return env


# Jobs that completed on their first attempt, each with its attempt record,
# as a worker leaves them.
ADD_FINISHED = """
WITH finished AS (
    INSERT INTO jobs (
        task, queue, payload, priority, state, run_at, attempt, max_attempts,
        worker_id, started_at, finished_at, result, created_at, updated_at
    )
    SELECT 'bench_noop', 'default', '{}'::jsonb, 0, 'COMPLETED', now(), 1, 5,
           'bench-history', now(), now(), 'null'::jsonb, now(), now()
    FROM generate_series(1, $1)
    RETURNING id, worker_id, started_at, finished_at
)
INSERT INTO job_attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)
SELECT id, 1, worker_id, started_at, finished_at, 'COMPLETED' FROM finished
"""


class ConveyorProducer(Producer):
    def __init__(self, queue: JobQueue, stack: contextlib.AsyncExitStack) -> None:
        self._queue = queue
        self._stack = stack

    async def submit_noop(self) -> None:
        await self._queue.enqueue(runner.NOOP_TASK, NOOP_PAYLOAD)

    async def submit_noop_batch(self, count: int) -> None:
        requests = [JobRequest(runner.NOOP_TASK, NOOP_PAYLOAD) for _ in range(count)]
        await self._queue.enqueue_many(requests)

    async def submit_probe(self, submitted_ns: int) -> None:
        await self._queue.enqueue(runner.PROBE_TASK, {SUBMITTED_NS: submitted_ns})

    async def close(self) -> None:
        await self._stack.aclose()


class Conveyor(System):
    name = "conveyor"
    worker_module = "benchmarks.systems.conveyor"
    tables = ("jobs", "job_attempts")
    keeps_finished_rows = True
    has_http_api = True
    has_store_loop = True

    def __init__(self, dsn: str, params: dict[str, Any] | None = None) -> None:
        unknown = {name.lower() for name in params or {}} - SETTING_NAMES
        if unknown:
            raise ValueError(
                f"unknown conveyor settings {sorted(unknown)}; "
                f"known: {sorted(SETTING_NAMES)}"
            )
        self.dsn = dsn
        self.params = dict(params or {})

    async def install(self) -> None:
        await upgrade(self.dsn)

    async def open_producer(self) -> Producer:
        stack = contextlib.AsyncExitStack()
        settings = Settings(database_url=self.dsn, pool_size=1)
        queue = await stack.enter_async_context(open_queue(settings))
        return ConveyorProducer(queue, stack)

    async def unfinished(self, connection: asyncpg.Connection, after_id: int) -> int:
        # Two counts, so that each reads a small partial index (claim, lease).
        count: int = await connection.fetchval(
            """
            SELECT (SELECT count(*) FROM jobs
                    WHERE state IN ('FAILED', 'PENDING') AND id > $1)
                 + (SELECT count(*) FROM jobs
                    WHERE state = 'IN_PROGRESS' AND id > $1)
            """,
            after_id,
        )
        return count

    async def add_finished(self, connection: asyncpg.Connection, count: int) -> None:
        await connection.execute(ADD_FINISHED, count)

    def worker_env(self) -> dict[str, str]:
        return worker_environment(self.dsn, self.params)

    def describe(self) -> str:
        settings = Settings.from_env({**os.environ, **self.worker_env()})
        shown = (
            "concurrency",
            "claim_batch",
            "pool_size",
            "lease_seconds",
            "heartbeat_seconds",
            "poll_seconds",
            "log_level",
        )
        return ", ".join(f"{name}={getattr(settings, name)}" for name in shown)


class ConveyorWorker:
    def __init__(self) -> None:
        self._settings = Settings.from_env()
        self._container: Any = None

    async def prepare(self) -> None:
        from conveyor.entrypoints.container import build_container, resolve
        from conveyor.entrypoints.logging import configure_logging

        configure_logging(self._settings.log_level, self._settings.log_format)
        self._container = build_container(self._settings)

        engine = await resolve(self._container.engine)
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(min(WARM_CONNECTIONS, self._settings.pool_size)):
                connection = await stack.enter_async_context(engine.connect())
                await connection.execute(sa.text("SELECT 1"))

    async def run(self) -> None:
        from conveyor.entrypoints.container import shutdown
        from conveyor.entrypoints.worker import run_worker

        try:
            await run_worker(self._settings, self._container)
        finally:
            await shutdown(self._container)

    async def stop(self) -> None:
        # The same path as `kill -TERM`: run_worker's handler drains the worker.
        os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    dsn, params = runner.parse_args()
    os.environ.update(worker_environment(dsn, params))
    # `conveyor worker` runs on uvloop when it is installed (run_event_loop).
    runner.serve(ConveyorWorker, use_uvloop=True)


if __name__ == "__main__":
    main()
