"""The PostgreSQL job store: JobRepository on asyncpg, with SQLAlchemy's pool.

Each method runs one statement in its own transaction (autocommit). Only add
and add_many may run a second one, to read the jobs that already hold their
idempotency keys. The statements are built with SQLAlchemy Core and run on
the driver connection (see the statements module). Taking a connection from
the pool costs no round trip (see create_engine), and a connection used
again within one pass of the event loop skips the pool (see _execute).
"""

from __future__ import annotations

import asyncio
import itertools
import operator
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import msgspec
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import Pool, PoolProxiedConnection
from sqlalchemy.util import greenlet_spawn

from conveyor.adapters.postgres import statements
from conveyor.adapters.postgres.errors import connection_lost, translate_errors
from conveyor.adapters.postgres.rows import (
    NewJobSubmission,
    claimed_job,
    encode_payload,
    encode_result,
    job_from_row,
    job_with_attempts,
    storable_text,
)
from conveyor.adapters.postgres.statements import DriverStatement
from conveyor.application.ports import (
    ClaimRequest,
    Completion,
    Failure,
    JobPage,
    JobQuery,
    Lease,
    NewJob,
    QueueCounts,
    Submission,
)
from conveyor.domain.errors import IdempotencyConflict
from conveyor.domain.job import Job, JobId
from conveyor.domain.states import JobState, check_transition

T = TypeVar("T")

_FAILURE_TARGETS = frozenset({JobState.FAILED, JobState.DEAD})
_BIGINT_MAX = 2**63 - 1


# Times a batch insert is run again after PostgreSQL aborted it as a deadlock.
_DEADLOCK_RETRIES = 3


class PostgresJobRepository:
    """JobRepository on PostgreSQL.

    `time_shift` is added to the database clock in every statement; it is a
    test hook that moves time forward, and stays zero in production.
    """

    def __init__(
        self, engine: AsyncEngine, time_shift: timedelta = timedelta(0)
    ) -> None:
        # No isolation level is set: statements run on the driver connection
        # outside any transaction block, so each commits on its own.
        self._engine = engine
        self.time_shift = time_shift
        # Connections checked out of the pool that are free to run the next
        # statement, each with the pool it came from (see _on_connection).
        self._idle: list[tuple[PoolProxiedConnection, Pool]] = []
        self._release_scheduled = False
        repository = weakref.ref(self)

        def close_idle(_: Engine) -> None:
            found = repository()
            if found is not None:
                found._close_idle()

        event.listen(engine.sync_engine, "engine_disposed", close_idle)

    async def _execute(
        self, statement: DriverStatement, parameters: Mapping[str, Any] | None = None
    ) -> list[asyncpg.Record]:
        """Run `statement` on a pooled driver connection and return its rows."""
        return await self._on_connection(
            lambda connection: self._fetch_on(connection, statement, parameters or {})
        )

    async def _on_connection(
        self, work: Callable[[asyncpg.Connection], Awaitable[T]]
    ) -> T:
        """Run `work` with one pooled driver connection and return its result.

        The connection does not go back to the pool at once: it waits as idle
        until the event loop's next pass, so that the statements a caller runs
        one after the other reuse it. Checking a connection out of the pool
        runs SQLAlchemy's synchronous pool in a greenlet, which cost about a
        third of the CPU time of a one-job submission.
        """
        pooled, pool = await self._checkout()
        # The pooled connection itself, without SQLAlchemy's Connection around
        # it, which would cost more CPU time than the statement's own work.
        driver_connection = pooled.driver_connection
        assert isinstance(driver_connection, asyncpg.Connection)
        try:
            result = await work(driver_connection)
        except BaseException as exc:
            await self._give_back_after(pooled, driver_connection, exc)
            raise
        self._keep_idle(pooled, pool)
        return result

    async def _fetch_on(
        self,
        connection: asyncpg.Connection,
        statement: DriverStatement,
        parameters: Mapping[str, Any],
    ) -> list[asyncpg.Record]:
        values = {"time_shift": self.time_shift, **parameters}
        rows: list[asyncpg.Record] = await connection.fetch(
            statement.sql, *statement.arguments(values)
        )
        return rows

    async def _give_back_after(
        self,
        pooled: PoolProxiedConnection,
        driver_connection: asyncpg.Connection,
        error: BaseException,
    ) -> None:
        """Return a connection to the pool after `error`, or raise StoreUnavailable if it closed."""
        if isinstance(error, Exception) and driver_connection.is_closed():
            # SQLAlchemy does not see errors of the driver connection,
            # so this invalidates the connection in the pool.
            await greenlet_spawn(pooled.invalidate, error)
            await greenlet_spawn(pooled.close)
            raise connection_lost(error) from error
        await greenlet_spawn(pooled.close)

    async def _checkout(self) -> tuple[PoolProxiedConnection, Pool]:
        """Return an idle connection, or else one from the pool, with its pool."""
        pool = self._engine.sync_engine.pool
        while self._idle:
            pooled, source = self._idle.pop()
            driver_connection = pooled.driver_connection
            assert isinstance(driver_connection, asyncpg.Connection)
            if source is pool and not driver_connection.is_closed():
                return pooled, pool
            # The server closed it while it waited; the pool checks for the
            # same on checkout (see create_engine).
            await greenlet_spawn(pooled.invalidate)
            await greenlet_spawn(pooled.close)
        return await self._engine.raw_connection(), pool

    def _keep_idle(self, pooled: PoolProxiedConnection, pool: Pool) -> None:
        if pool is not self._engine.sync_engine.pool:
            # The engine was disposed meanwhile: hand it back to its old pool,
            # as the pool's users do.
            pooled.close()
            return
        self._idle.append((pooled, pool))
        if not self._release_scheduled:
            self._release_scheduled = True
            asyncio.get_running_loop().call_soon(self._release_idle)

    def _release_idle(self) -> None:
        """Return the idle connections to the pool.

        Returning a connection awaits nothing, because the adapter rolls back
        only a transaction it began, and autocommit begins none. So it skips
        greenlet_spawn, about 10 us of CPU time per call here.
        """
        self._release_scheduled = False
        while self._idle:
            pooled, _ = self._idle.pop()
            pooled.close()

    def _close_idle(self) -> None:
        """Close the idle connections, once the engine's pool was disposed.

        They are checked out, so disposing the pool did not close them. This
        runs inside the engine's dispose, in the greenlet where SQLAlchemy
        may await the driver.
        """
        while self._idle:
            pooled, _ = self._idle.pop()
            driver_connection = pooled.driver_connection
            pooled.invalidate()
            if isinstance(driver_connection, asyncpg.Connection):
                if not driver_connection.is_closed():
                    # Outside a greenlet SQLAlchemy could not close it.
                    driver_connection.terminate()
            pooled.close()  # checks the emptied record in to its old pool

    @translate_errors
    async def now(self) -> datetime:
        """Return the store's current time: the database clock plus time_shift."""
        [(value,)] = await self._execute(statements.SELECT_NOW)
        assert isinstance(value, datetime)
        return value

    @translate_errors
    async def add(self, new_job: NewJob) -> Submission:
        request = new_job.request
        key = request.idempotency_key
        inserted = await self._execute(
            statements.INSERT_UNKEYED_JOB if key is None else statements.INSERT_JOB,
            {
                "task": request.task,
                "queue": request.queue,
                "payload": encode_payload(request.payload),
                "priority": request.priority,
                "run_at": request.run_at,
                "delay": request.delay,
                "max_attempts": new_job.max_attempts,
                "idempotency_key": key,
                "fingerprint": new_job.fingerprint,
            },
        )
        if inserted:
            job_id, _, run_at, created_at, _ = inserted[0]
            return NewJobSubmission(job_id, new_job, run_at, created_at)
        assert key is not None, "an insert without a key always stores the job"
        existing = await self._find_by_keys([key])
        return Submission(existing[key], False)

    @translate_errors
    async def add_many(self, new_jobs: Sequence[NewJob]) -> list[Submission]:
        if not new_jobs:
            return []
        if len(new_jobs) == 1:
            return [await self.add(new_jobs[0])]
        keyed = any(new_job.request.idempotency_key is not None for new_job in new_jobs)
        parameters = {"jobs": _insert_document(new_jobs)}
        if not keyed:
            [inserted] = await self._execute(statements.INSERT_UNKEYED_JOBS, parameters)
            ids, _, run_ats, created_at = inserted
            # Every array is NULL when no job was inserted.
            return _new_submissions(new_jobs, ids, run_ats, created_at)
        for retry in range(_DEADLOCK_RETRIES + 1):
            try:
                return await self._add_keyed(new_jobs, parameters)
            except asyncpg.DeadlockDetectedError:
                # Two batches that hold the same new keys in different orders
                # each wait for the other's uncommitted insert, and PostgreSQL
                # aborts one of them. The transaction is rolled back, so it
                # can run again. After the last retry the error becomes a 503.
                if retry == _DEADLOCK_RETRIES:
                    raise
        raise AssertionError("unreachable")

    async def _add_keyed(
        self, new_jobs: Sequence[NewJob], parameters: Mapping[str, Any]
    ) -> list[Submission]:
        """Insert a batch with keys in one transaction, or nothing on a conflict.

        The transaction commits only after every repeated key was found to
        belong to the same request, so a batch rejected for one reused key leaves
        no job of it behind.
        """

        async def insert(connection: asyncpg.Connection) -> list[Submission]:
            async with connection.transaction():
                [inserted] = await self._fetch_on(
                    connection, statements.INSERT_JOBS, parameters
                )
                ids, keys, run_ats, created_at = inserted
                submissions = await self._match_submissions(
                    new_jobs,
                    ids or [],
                    keys or [],
                    run_ats or [],
                    created_at,
                    connection,
                )
                for index, (new_job, submission) in enumerate(
                    zip(new_jobs, submissions, strict=True)
                ):
                    if submission.created:
                        continue
                    existing = submission.job
                    if existing.fingerprint != new_job.fingerprint:
                        assert existing.idempotency_key is not None
                        raise IdempotencyConflict(
                            existing.idempotency_key,
                            existing.id,
                            f"jobs[{index}].idempotency_key",
                        )
                return submissions

        return await self._on_connection(insert)

    async def _match_submissions(
        self,
        new_jobs: Sequence[NewJob],
        ids: list[int],
        keys: list[str | None],
        run_ats: list[datetime | None],
        created_at: datetime | None,
        connection: asyncpg.Connection,
    ) -> list[Submission]:
        """Pair each request with its new job, or with the job holding its key.

        `connection` is the one that inserted the jobs, inside its
        transaction, so that it also finds a key that an earlier item of the
        same batch inserted.

        Rows were inserted in input order, so the new jobs without a key,
        sorted by id, line up with the requests without a key.
        """
        new_by_key: dict[str, tuple[int, datetime | None]] = {}
        unkeyed: list[tuple[int, datetime | None]] = []
        for job_id, key, run_at in zip(ids, keys, run_ats, strict=True):
            if key is None:
                unkeyed.append((job_id, run_at))
            else:
                new_by_key[key] = (job_id, run_at)
        new_unkeyed = iter(sorted(unkeyed, key=operator.itemgetter(0)))
        matches: list[tuple[int, datetime | None] | str] = []
        for new_job in new_jobs:
            key = new_job.request.idempotency_key
            if key is None:
                matches.append(next(new_unkeyed))
            elif key in new_by_key:
                matches.append(new_by_key.pop(key))
            else:
                matches.append(key)

        existing = await self._find_by_keys(
            [m for m in matches if isinstance(m, str)], connection
        )
        submissions: list[Submission] = []
        for match, new_job in zip(matches, new_jobs, strict=True):
            if isinstance(match, str):
                submissions.append(Submission(existing[match], False))
            else:
                assert created_at is not None
                job_id, run_at = match
                submissions.append(
                    NewJobSubmission(
                        JobId(job_id), new_job, run_at or created_at, created_at
                    )
                )
        return submissions

    async def _find_by_keys(
        self, keys: list[str], connection: asyncpg.Connection | None = None
    ) -> dict[str, Job]:
        if not keys:
            return {}
        # ON CONFLICT DO NOTHING waited for any transaction that was inserting
        # the same key, so the job holding it is committed and visible now.
        parameters = {"idempotency_keys": keys}
        if connection is None:
            rows = await self._execute(statements.SELECT_BY_KEYS, parameters)
        else:
            rows = await self._fetch_on(
                connection, statements.SELECT_BY_KEYS, parameters
            )
        found = {row["idempotency_key"]: job_with_attempts(row) for row in rows}
        missing = set(keys) - found.keys()
        if missing:
            # Only a job deleted by hand between the two statements gets here.
            raise RuntimeError(
                f"jobs holding idempotency keys {sorted(missing)} disappeared "
                "during submission; submit again"
            )
        return found

    @translate_errors
    async def get(self, job_id: JobId) -> Job | None:
        if not _is_bigint(job_id):
            return None
        rows = await self._execute(statements.SELECT_JOB, {"job_id": job_id})
        return job_with_attempts(rows[0]) if rows else None

    @translate_errors
    async def list_jobs(self, query: JobQuery) -> JobPage:
        if query.limit < 1:
            return JobPage([], None)
        before_id = query.before_id
        if before_id is not None and not _is_bigint(before_id):
            # Every id is lower than a cursor beyond the bigint range.
            before_id = None if before_id > 0 else JobId(0)
        statement = statements.list_jobs_for_driver(
            states=bool(query.states),
            queues=bool(query.queues),
            tasks=bool(query.tasks),
            before_id=before_id is not None,
        )
        rows = await self._execute(
            statement,
            {
                "states": sorted(state.value for state in query.states),
                "queues": sorted(query.queues),
                "tasks": sorted(query.tasks),
                "before_id": before_id,
                "limit": query.limit + 1,
            },
        )
        page = [job_with_attempts(row) for row in rows[: query.limit]]
        more = len(rows) > query.limit
        return JobPage(page, page[-1].id if more else None)

    @translate_errors
    async def counts(self) -> list[QueueCounts]:
        rows = await self._execute(statements.COUNT_BY_QUEUE_AND_STATE)
        per_queue: dict[str, dict[JobState, int]] = {}
        for row in rows:
            per_queue.setdefault(row["queue"], {})[JobState(row["state"])] = row[
                "total"
            ]
        return [QueueCounts(queue, counts) for queue, counts in per_queue.items()]

    @translate_errors
    async def claim(self, request: ClaimRequest) -> list[Job]:
        if request.limit < 1 or not request.queues:
            return []
        rows = await self._execute(
            statements.CLAIM,
            {
                "queues": list(dict.fromkeys(request.queues)),
                "limit": request.limit,
                "worker_id": request.worker_id,
                "lease_token": request.lease_token,
                "lease_duration": request.lease_duration,
            },
        )
        return [
            claimed_job(row, request.worker_id, request.lease_token) for row in rows
        ]

    @translate_errors
    async def extend_leases(
        self, leases: Sequence[Lease], duration: timedelta
    ) -> set[JobId]:
        if not leases:
            return set()
        leases = _in_lock_order(leases)
        rows = await self._execute(
            statements.EXTEND_LEASES,
            {**_lease_arrays(leases), "lease_duration": duration},
        )
        return {JobId(row["id"]) for row in rows}

    @translate_errors
    async def complete(self, completions: Sequence[Completion]) -> set[JobId]:
        if not completions:
            return set()
        completions = sorted(completions, key=lambda c: c.lease.job_id)  # lock order
        rows = await self._execute(
            statements.COMPLETE,
            {
                **_lease_arrays([c.lease for c in completions]),
                "results": [encode_result(c.result) for c in completions],
            },
        )
        return {JobId(row["job_id"]) for row in rows}

    @translate_errors
    async def fail(self, failures: Sequence[Failure]) -> set[JobId]:
        return await self._record_failures(statements.FAIL, failures)

    @translate_errors
    async def expire(self, failures: Sequence[Failure]) -> set[JobId]:
        return await self._record_failures(statements.EXPIRE, failures)

    async def _record_failures(
        self, statement: DriverStatement, failures: Sequence[Failure]
    ) -> set[JobId]:
        if not failures:
            return set()
        for failure in failures:
            if failure.target not in _FAILURE_TARGETS:
                raise ValueError(
                    f"a failure leads to FAILED or DEAD, not {failure.target.value}"
                )
        failures = sorted(failures, key=lambda f: f.lease.job_id)  # lock order
        rows = await self._execute(
            statement,
            {
                **_lease_arrays([f.lease for f in failures]),
                "targets": [f.target.value for f in failures],
                "retry_delays": [f.retry_delay for f in failures],
                "error_types": [storable_text(f.error.type) for f in failures],
                "error_messages": [storable_text(f.error.message) for f in failures],
                "error_tracebacks": [
                    storable_text(f.error.traceback) for f in failures
                ],
            },
        )
        return {JobId(row["job_id"]) for row in rows}

    @translate_errors
    async def release(self, leases: Sequence[Lease]) -> set[JobId]:
        if not leases:
            return set()
        leases = _in_lock_order(leases)
        rows = await self._execute(statements.RELEASE, _lease_arrays(leases))
        return {JobId(row["job_id"]) for row in rows}

    @translate_errors
    async def find_expired(self, limit: int) -> list[Job]:
        rows = await self._execute(statements.FIND_EXPIRED, {"limit": limit})
        return [job_from_row(row) for row in rows]

    @translate_errors
    async def set_state(
        self, job_id: JobId, expected: JobState, target: JobState
    ) -> Job | None:
        if target is JobState.CANCELLED:
            statement = statements.CANCEL
        elif target is JobState.PENDING:
            statement = statements.REQUEUE
        else:
            raise ValueError(
                f"set_state moves jobs to CANCELLED or PENDING, not {target}"
            )
        check_transition(job_id, expected, target)
        if not _is_bigint(job_id):
            return None

        rows = await self._execute(
            statement, {"job_id": job_id, "expected": expected.value}
        )
        return job_with_attempts(rows[0]) if rows else None


def _is_bigint(job_id: int) -> bool:
    """Tell whether `job_id` fits the id column; no job has an id outside it."""
    return -_BIGINT_MAX - 1 <= job_id <= _BIGINT_MAX


def _insert_document(new_jobs: Sequence[NewJob]) -> str:
    """Return the JSON document of INSERT_JOBS: one array of INSERTED_FIELDS per job.

    A job without run_at, delay, idempotency key and fingerprint leaves out
    the last four fields, which the statement then reads as NULL.
    """
    items: list[tuple[Any, ...]] = []
    append = items.append
    for new_job in new_jobs:
        request = new_job.request
        if (
            request.run_at is None
            and request.delay is None
            and request.idempotency_key is None
            and new_job.fingerprint is None
        ):
            append(
                (
                    request.task,
                    request.queue,
                    request.payload,
                    request.priority,
                    new_job.max_attempts,
                )
            )
        else:
            append(
                (
                    request.task,
                    request.queue,
                    request.payload,
                    request.priority,
                    new_job.max_attempts,
                    request.run_at,
                    request.delay,
                    request.idempotency_key,
                    new_job.fingerprint,
                )
            )
    # The payloads are encoded as encode_payload does, in one call.
    document = msgspec.json.encode(items)
    if b"\\u0000" in document:
        for new_job in new_jobs:
            encode_payload(new_job.request.payload)  # raises for a NUL character
    return document.decode()


def _new_submissions(
    new_jobs: Sequence[NewJob],
    ids: list[JobId],
    run_ats: list[datetime | None],
    created_at: datetime,
) -> list[Submission]:
    """Pair requests without keys with the jobs inserted for them.

    Rows were inserted in input order, so the ids sorted line up with the
    requests. A NULL due time stands for created_at.
    """
    rows: Iterable[tuple[JobId, datetime | None]] = zip(ids, run_ats, strict=True)
    if not all(map(operator.lt, ids, itertools.islice(ids, 1, None))):
        rows = sorted(rows, key=operator.itemgetter(0))
    return [
        NewJobSubmission(
            job_id, new_job, created_at if run_at is None else run_at, created_at
        )
        for (job_id, run_at), new_job in zip(rows, new_jobs, strict=True)
    ]


def _in_lock_order(leases: Sequence[Lease]) -> list[Lease]:
    """Sort leases by job id.

    The statements find rows through the primary key, which yields them in
    id order, and sorted input keeps that order whichever plan PostgreSQL
    picks. So two calls on overlapping jobs, such as a heartbeat and a
    completion, lock rows in the same order and do not deadlock.
    """
    return sorted(leases, key=lambda lease: lease.job_id)


def _lease_arrays(leases: Sequence[Lease]) -> dict[str, list[Any]]:
    return {
        "job_ids": [lease.job_id for lease in leases],
        "lease_tokens": [lease.lease_token for lease in leases],
    }
