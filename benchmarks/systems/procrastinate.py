"""procrastinate: its Worker on a psycopg pool, with LISTEN/NOTIFY on.

Run as a worker process: python -m benchmarks.systems.procrastinate --dsn URL

The worker fetches one job per statement (procrastinate_fetch_job_v2) and
finishes one per statement. `concurrency` sets how many jobs run at once.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import asyncpg
import procrastinate
from procrastinate.worker import Worker

from benchmarks import runner
from benchmarks.systems.base import NOOP_PAYLOAD, SUBMITTED_NS, Producer, System

ADD_FINISHED = """
INSERT INTO procrastinate_jobs (queue_name, task_name, args, status, attempts)
SELECT 'default', 'bench_noop', '{}'::jsonb, 'succeeded', 1
FROM generate_series(1, $1)
"""


def _make_app(dsn: str, pool_size: int) -> procrastinate.App:
    connector = procrastinate.PsycopgConnector(
        conninfo=dsn, min_size=1, max_size=pool_size
    )
    app = procrastinate.App(connector=connector)

    @app.task(name=runner.NOOP_TASK)
    async def noop(**_: Any) -> None:
        runner.PROBE.noop()

    @app.task(name=runner.PROBE_TASK)
    async def probe(**payload: Any) -> None:
        runner.PROBE.probe(payload[SUBMITTED_NS])

    return app


class ProcrastinateProducer(Producer):
    def __init__(self, app: procrastinate.App) -> None:
        self._app = app
        self._noop = app.configure_task(runner.NOOP_TASK)
        self._probe = app.configure_task(runner.PROBE_TASK)

    async def submit_noop(self) -> None:
        await self._noop.defer_async(**NOOP_PAYLOAD)

    async def submit_noop_batch(self, count: int) -> None:
        await self._noop.batch_defer_async(*([NOOP_PAYLOAD] * count))

    async def submit_probe(self, submitted_ns: int) -> None:
        await self._probe.defer_async(**{SUBMITTED_NS: submitted_ns})

    async def close(self) -> None:
        await self._app.close_async()


class Procrastinate(System):
    name = "procrastinate"
    worker_module = "benchmarks.systems.procrastinate"
    defaults: ClassVar[dict[str, Any]] = {
        # Jobs in flight per worker process (Worker concurrency).
        "concurrency": 10,
        # "never" keeps finished jobs as succeeded rows, like conveyor does.
        "delete_jobs": "never",
    }
    # It drains a few hundred jobs a second here: a tenth of the count keeps
    # each drain under a minute.
    throughput_share = 0.1
    keeps_finished_rows = True
    tables = (
        "procrastinate_jobs",
        "procrastinate_events",
        "procrastinate_periodic_defers",
        "procrastinate_workers",
    )

    async def install(self) -> None:
        app = _make_app(self.dsn, pool_size=1)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def open_producer(self) -> Producer:
        app = _make_app(self.dsn, pool_size=1)
        await app.open_async()
        return ProcrastinateProducer(app)

    async def add_finished(self, connection: asyncpg.Connection, count: int) -> None:
        # Succeeded rows as delete_jobs="never" leaves them. Inserting them
        # as succeeded fires no trigger, so no event rows are written.
        await connection.execute(ADD_FINISHED, count)

    async def unfinished(self, connection: asyncpg.Connection, after_id: int) -> int:
        count: int = await connection.fetchval(
            "SELECT count(*) FROM procrastinate_jobs"
            " WHERE id > $1 AND status IN ('todo', 'doing')",
            after_id,
        )
        return count


class ProcrastinateWorker:
    def __init__(self, dsn: str, params: dict[str, Any]) -> None:
        self._concurrency = int(params["concurrency"])
        self._delete_jobs = str(params["delete_jobs"])
        # One connection per job in flight, one for LISTEN, one spare.
        self._app = _make_app(dsn, pool_size=self._concurrency + 2)
        self._worker: Worker | None = None

    async def prepare(self) -> None:
        await self._app.open_async()
        self._worker = Worker(
            self._app,
            concurrency=self._concurrency,
            install_signal_handlers=False,
            listen_notify=True,
            delete_jobs=self._delete_jobs,
        )

    async def run(self) -> None:
        assert self._worker is not None
        try:
            await self._worker.run()
        finally:
            await self._app.close_async()

    async def stop(self) -> None:
        assert self._worker is not None
        self._worker.stop()
        await asyncio.sleep(0)


def main() -> None:
    dsn, params = runner.parse_args()
    # procrastinate's CLI runs the worker with asyncio.run, on the default loop.
    runner.serve(lambda: ProcrastinateWorker(dsn, params), use_uvloop=False)


if __name__ == "__main__":
    main()
