"""The SQL statements of the PostgreSQL job store, built once with SQLAlchemy Core.

Every statement judges time by the database clock: now() plus the
`time_shift` parameter (zero outside tests). Statements that act on many
jobs take their input as parallel arrays and unnest them (INSERT_JOBS takes
one JSON array instead), so a batch costs one round trip. Target states are the domain's constants or arrive in the
input, chosen by the domain (a Failure's target).

Each statement is compiled once for asyncpg (DriverStatement), and the
store runs it on the driver connection, which prepares it once per
connection. This skips SQLAlchemy's work per execution, which took about
half of the CPU time of a one-job submission in a profile.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID, aggregate_order_by
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.sql.compiler import SQLCompiler

from conveyor.adapters.postgres.notify import CHANNEL
from conveyor.adapters.postgres.tables import (
    is_claimable,
    is_in_progress,
    job_attempts,
    jobs,
    text_constant,
)
from conveyor.domain.job import AttemptOutcome
from conveyor.domain.states import JobState

NOW = sa.func.now() + sa.bindparam("time_shift", type_=sa.Interval)

_ASYNCPG_DIALECT = PGDialect_asyncpg()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A statement compiled for asyncpg, with $1, $2 ... placeholders.

    `names` gives the parameter of each placeholder in order. `defaults`
    contains the values of the literals that SQLAlchemy turned into
    parameters.
    """

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    def arguments(self, values: Mapping[str, Any]) -> list[Any]:
        """Return the placeholder values in order; raise KeyError if one is missing."""
        return [
            values[name] if name in values else self.defaults[name]
            for name in self.names
        ]


def for_driver(statement: sa.ClauseElement) -> DriverStatement:
    """Compile `statement` for asyncpg."""
    compiled = statement.compile(dialect=_ASYNCPG_DIALECT)
    assert isinstance(compiled, SQLCompiler)
    names = tuple(compiled.positiontup or ())
    defaults = {
        name: bind.effective_value
        for name, bind in compiled.binds.items()
        if name in names and not bind.required
    }
    return DriverStatement(str(compiled), names, defaults)


def _array(name: str, item_type: sa.types.TypeEngine[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=ARRAY(item_type))


def _notify_if_due() -> sa.ColumnElement[object]:
    # PostgreSQL delivers notifications at commit and sends identical ones
    # from one transaction only once (NOTIFY in the PostgreSQL manual), so a
    # batch sends one per queue.
    return sa.case(
        (jobs.c.run_at <= NOW, sa.func.pg_notify(text_constant(CHANNEL), jobs.c.queue)),
    ).label("notified")


def attempts_json(job_id: sa.ColumnElement[int]) -> sa.Label[object]:
    """Finished attempts of the job `job_id`, oldest first, as a JSON array or NULL."""
    record = sa.func.jsonb_build_object(
        text_constant("attempt"),
        job_attempts.c.attempt,
        text_constant("worker_id"),
        job_attempts.c.worker_id,
        text_constant("started_at"),
        job_attempts.c.started_at,
        text_constant("finished_at"),
        job_attempts.c.finished_at,
        text_constant("outcome"),
        job_attempts.c.outcome,
        text_constant("error_type"),
        job_attempts.c.error_type,
        text_constant("error_message"),
        job_attempts.c.error_message,
        text_constant("error_traceback"),
        job_attempts.c.error_traceback,
    )
    return (
        sa.select(
            sa.func.jsonb_agg(
                aggregate_order_by(record, job_attempts.c.id), type_=JSONB
            )
        )
        .where(job_attempts.c.job_id == job_id)
        .scalar_subquery()
        .label("attempts")
    )


# Fields of each job in the JSON document of the batch inserts, in this
# order. A job without run_at, delay, idempotency key and fingerprint may
# leave out the last four, which then read as NULL.
INSERTED_FIELDS = (
    "task",
    "queue",
    "payload",
    "priority",
    "max_attempts",
    "run_at",
    "delay",
    "idempotency_key",
    "fingerprint",
)

_INSERTED_COLUMNS = (
    "task",
    "queue",
    "payload",
    "priority",
    "state",
    "run_at",
    "attempt",
    "max_attempts",
    "idempotency_key",
    "fingerprint",
    "created_at",
    "updated_at",
)


def _due_time(
    run_at: sa.ColumnElement[Any], delay: sa.ColumnElement[Any]
) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(
        run_at,
        NOW + sa.func.coalesce(delay, sa.literal(timedelta(0), sa.Interval)),
    )


def _new_jobs(insert: PgInsert, keyed: bool) -> sa.Insert:
    """Finish an insert of new jobs.

    With `keyed`, a repeated idempotency key inserts nothing. Without it,
    the jobs must have no key, and the insert skips ON CONFLICT. Its arbiter
    index checks and speculative insertion cost the server about 1 us of CPU
    time per row, measured on a 2-core machine.

    The jobs are returned as (id, idempotency_key, run_at, created_at). Their
    other fields are known without reading them: they come from the request,
    or are the initial values of a PENDING job, and updated_at equals
    created_at.
    """
    if keyed:
        insert = insert.on_conflict_do_nothing(
            index_elements=[jobs.c.idempotency_key],
            index_where=jobs.c.idempotency_key.is_not(None),
        )
    return insert.returning(
        jobs.c.id,
        jobs.c.idempotency_key,
        jobs.c.run_at,
        jobs.c.created_at,
        _notify_if_due(),
    )


def _insert_jobs(keyed: bool) -> sa.Select[tuple[object, ...]]:
    """Insert jobs from one JSON array; return them as arrays in one row.

    Each item of the `jobs` array is an array of the INSERTED_FIELDS. One
    JSON text costs the client far less to encode than one array parameter
    per field, whose items asyncpg checks one by one. Rows go in input
    order, so ids follow the input order too.

    The one row contains arrays of the new jobs' ids, idempotency keys and due
    times, aligned with each other, and their common created_at. A due time
    equal to created_at (a job due at once) is NULL in its array. Arrays
    cost the client far less to decode than one row per job.
    """
    new = (
        sa.func.jsonb_array_elements(
            sa.cast(sa.bindparam("jobs", type_=sa.Text), JSONB)
        )
        .table_valued(sa.column("value", JSONB), with_ordinality="position")
        .render_derived(name="new")
    )

    def field(name: str) -> sa.ColumnElement[Any]:
        index = sa.literal_column(str(INSERTED_FIELDS.index(name)), sa.Integer)
        if name == "payload":
            return new.c.value.op("->", return_type=JSONB)(index)
        return new.c.value.op("->>", return_type=sa.Text)(index)

    rows = sa.select(
        field("task"),
        field("queue"),
        field("payload"),
        sa.cast(field("priority"), sa.Integer),
        text_constant(JobState.PENDING.value),
        _due_time(
            sa.cast(field("run_at"), sa.DateTime(timezone=True)),
            sa.cast(field("delay"), sa.Interval),
        ),
        sa.literal(0),
        sa.cast(field("max_attempts"), sa.Integer),
        field("idempotency_key"),
        field("fingerprint"),
        NOW,
        NOW,
    ).order_by(new.c.position)
    inserted = _new_jobs(
        pg_insert(jobs).from_select(_INSERTED_COLUMNS, rows), keyed
    ).cte("inserted")
    columns: list[sa.ColumnElement[Any]] = [
        sa.func.array_agg(inserted.c.id, type_=ARRAY(sa.BigInteger())).label("ids"),
        sa.func.array_agg(inserted.c.idempotency_key, type_=ARRAY(sa.Text())).label(
            "keys"
        ),
        sa.func.array_agg(
            sa.func.nullif(inserted.c.run_at, inserted.c.created_at),
            type_=ARRAY(sa.DateTime(timezone=True)),
        ).label("run_ats"),
        sa.func.min(inserted.c.created_at).label("created_at"),
    ]
    return sa.select(*columns)


def _insert_job(keyed: bool) -> sa.Insert:
    """Insert one job, returned as in _new_jobs."""
    return _new_jobs(
        pg_insert(jobs).values(
            task=sa.bindparam("task", type_=sa.Text),
            queue=sa.bindparam("queue", type_=sa.Text),
            payload=sa.cast(sa.bindparam("payload", type_=sa.Text), JSONB),
            priority=sa.bindparam("priority", type_=sa.Integer),
            state=text_constant(JobState.PENDING.value),
            run_at=_due_time(
                sa.bindparam("run_at", type_=sa.DateTime(timezone=True)),
                sa.bindparam("delay", type_=sa.Interval),
            ),
            attempt=0,
            max_attempts=sa.bindparam("max_attempts", type_=sa.Integer),
            idempotency_key=sa.bindparam("idempotency_key", type_=sa.Text),
            fingerprint=sa.bindparam("fingerprint", type_=sa.Text),
            created_at=NOW,
            updated_at=NOW,
        ),
        keyed,
    )


def _select_by_keys() -> sa.Select[tuple[object, ...]]:
    return sa.select(*jobs.c, attempts_json(jobs.c.id)).where(
        jobs.c.idempotency_key == sa.any_(_array("idempotency_keys", sa.Text()))
    )


def _ids_of(rows: sa.CTE) -> sa.ColumnElement[Any]:
    """Collect the ids in `rows` into one bigint array."""
    collected = sa.select(sa.func.array_agg(rows.c.id)).scalar_subquery()
    return sa.cast(collected, ARRAY(sa.BigInteger()))


# Columns a claim returns, in this order. The other fields of a claimed job
# are known without reading them: the state, worker and lease token come
# from the claim, updated_at equals started_at, and result and finished_at
# are NULL (COMPLETED and CANCELLED jobs are not claimable).
CLAIMED_COLUMNS = (
    "id",
    "task",
    "queue",
    "payload",
    "priority",
    "run_at",
    "attempt",
    "max_attempts",
    "idempotency_key",
    "fingerprint",
    "lease_expires_at",
    "started_at",
    "last_error_type",
    "last_error_message",
    "last_error_traceback",
    "created_at",
)


def _claim() -> sa.Select[tuple[object, ...]]:
    """Lease due jobs of the requested queues in claim order.

    For each queue, the lateral subquery walks the claim index in claim order
    and locks up to `limit` rows, skipping rows that other claimers have
    locked. The outer query keeps the best `limit` of them. Rows locked but
    not kept stay unchanged and are unlocked at commit. The claimed jobs
    return in claim order, with the columns in CLAIMED_COLUMNS only.
    """
    requested = (
        sa.func.unnest(_array("queues", sa.Text()))
        .table_valued("name")
        .render_derived(name="requested")
    )
    limit = sa.bindparam("limit", type_=sa.Integer)
    candidate = (
        sa.select(jobs.c.id, jobs.c.priority, jobs.c.run_at)
        .where(jobs.c.queue == requested.c.name, is_claimable(), jobs.c.run_at <= NOW)
        .order_by(jobs.c.priority.desc(), jobs.c.run_at, jobs.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .lateral("candidate")
    )
    due = (
        sa.select(candidate.c.id)
        .select_from(requested)
        .join(candidate, sa.true())
        .order_by(candidate.c.priority.desc(), candidate.c.run_at, candidate.c.id)
        .limit(limit)
        .cte("due")
    )
    claimed = (
        sa.update(jobs)
        # An array of ids makes the update an index scan on the primary key,
        # whereas a join with the CTE may become a sequential scan.
        .where(jobs.c.id == sa.any_(_ids_of(due)))
        .values(
            state=text_constant(JobState.IN_PROGRESS.value),
            attempt=jobs.c.attempt + 1,
            worker_id=sa.bindparam("worker_id", type_=sa.Text),
            lease_token=sa.bindparam("lease_token", type_=UUID(as_uuid=True)),
            lease_expires_at=NOW + sa.bindparam("lease_duration", type_=sa.Interval),
            started_at=NOW,
            updated_at=NOW,
        )
        .returning(*(jobs.c[name] for name in CLAIMED_COLUMNS))
        .cte("claimed")
    )
    return (
        sa.select(*claimed.c)
        .where(_commit_without_waiting_for_flush())
        .order_by(claimed.c.priority.desc(), claimed.c.run_at, claimed.c.id)
    )


def _commit_without_waiting_for_flush() -> sa.ColumnElement[bool]:
    """Return a true condition that turns synchronous_commit off for this transaction.

    The claim's commit then returns before its WAL reaches the disk, which
    saves a flush wait on every claim. A server crash can lose such a commit
    only while no later commit has flushed the WAL, so the claim is undone
    as a whole: the job is PENDING again and runs again (at least once, as
    after any crash). The completion or failure of the job is a normal
    commit, and flushing it also flushes the claim that came before it.

    NOTE: a handler that ran under an undone claim leaves no attempt record,
    because fencing rejects its outcome once the job is PENDING again.
    """
    async_commit = sa.select(
        sa.func.set_config(
            text_constant("synchronous_commit"), text_constant("off"), sa.true()
        )
    ).scalar_subquery()
    return async_commit.is_not(None)


# Input columns of a lease statement: (parameter name, column name, item type).
InputColumn = tuple[str, str, sa.types.TypeEngine[Any]]


def _leases(*extra: InputColumn) -> sa.TableValuedAlias:
    """Leases given as parallel arrays, one row per lease, plus `extra` columns."""
    columns: list[InputColumn] = [
        ("job_ids", "id", sa.BigInteger()),
        ("lease_tokens", "lease_token", UUID()),
        *extra,
    ]
    arrays = [_array(parameter, item_type) for parameter, _, item_type in columns]
    names = [name for _, name, _ in columns]
    return sa.func.unnest(*arrays).table_valued(*names).render_derived(name="lease")


def _runs_under(leases: sa.TableValuedAlias) -> sa.ColumnElement[bool]:
    """Match jobs that run under the given lease tokens, live or expired.

    A lease token is set exactly while a job is IN_PROGRESS (the check
    jobs_lease_check), so a matching token proves the state. Leaving the state
    out of the SQL keeps the planner off the partial indexes on state, which
    would scan every running job, and on the primary key instead.
    """
    return sa.and_(
        jobs.c.id == leases.c.id,
        jobs.c.lease_token == leases.c.lease_token,
    )


def _lease_is_live() -> sa.ColumnElement[bool]:
    # Written as a difference so that the planner uses a default selectivity
    # instead of column statistics. Statistics gathered while no job ran show
    # no live lease, and that estimate led it to scan the whole table.
    return jobs.c.lease_expires_at - NOW > sa.literal(timedelta(0), sa.Interval)


def _record_attempts(
    ended: sa.CTE, outcome: AttemptOutcome, with_error: bool
) -> sa.Insert:
    """Insert one job_attempts row per job in `ended`; returns their job ids."""
    columns = ["job_id", "attempt", "worker_id", "started_at", "finished_at", "outcome"]
    values: list[sa.ColumnElement[Any]] = [
        ended.c.id,
        ended.c.attempt,
        ended.c.worker_id,
        ended.c.started_at,
        NOW,
        text_constant(outcome.value),
    ]
    if with_error:
        columns += ["error_type", "error_message", "error_traceback"]
        values += [ended.c.error_type, ended.c.error_message, ended.c.error_traceback]
    return (
        sa.insert(job_attempts)
        .from_select(columns, sa.select(*values))
        .add_cte(ended)
        .returning(job_attempts.c.job_id)
    )


def _extend_leases() -> sa.Update:
    leases = _leases()
    return (
        sa.update(jobs)
        .where(_runs_under(leases), _lease_is_live())
        .values(
            lease_expires_at=NOW + sa.bindparam("lease_duration", type_=sa.Interval),
            updated_at=NOW,
        )
        .returning(jobs.c.id)
    )


def _complete() -> sa.Update:
    """Complete jobs whose lease is still live.

    No job_attempts row is written: the jobs row keeps the completed
    attempt (see the tables module), and COMPLETED is final.
    """
    leases = _leases(("results", "result", sa.Text()))
    return (
        sa.update(jobs)
        .where(_runs_under(leases), _lease_is_live())
        .values(
            state=text_constant(JobState.COMPLETED.value),
            result=sa.cast(leases.c.result, JSONB),
            finished_at=NOW,
            updated_at=NOW,
            lease_token=sa.null(),
            lease_expires_at=sa.null(),
        )
        .returning(jobs.c.id.label("job_id"))
    )


_FAILURE_INPUT: tuple[InputColumn, ...] = (
    ("targets", "target", sa.Text()),
    ("retry_delays", "retry_delay", sa.Interval()),
    ("error_types", "error_type", sa.Text()),
    ("error_messages", "error_message", sa.Text()),
    ("error_tracebacks", "error_traceback", sa.Text()),
)


def _failed_values(failure: sa.FromClause) -> dict[str, object]:
    """Mirror Job.failed: FAILED waits out its retry delay, DEAD is finished."""
    to_failed = failure.c.target == text_constant(JobState.FAILED.value)
    to_dead = failure.c.target == text_constant(JobState.DEAD.value)
    return {
        "state": failure.c.target,
        "run_at": sa.case(
            (to_failed, NOW + failure.c.retry_delay), else_=jobs.c.run_at
        ),
        "finished_at": sa.case((to_dead, NOW), else_=sa.null()),
        "last_error_type": failure.c.error_type,
        "last_error_message": failure.c.error_message,
        "last_error_traceback": failure.c.error_traceback,
        "lease_token": sa.null(),
        "lease_expires_at": sa.null(),
        "updated_at": NOW,
    }


def _ended_columns(source: sa.FromClause) -> list[sa.ColumnElement[object]]:
    return [
        jobs.c.id,
        jobs.c.attempt,
        jobs.c.worker_id,
        jobs.c.started_at,
        source.c.error_type,
        source.c.error_message,
        source.c.error_traceback,
    ]


def _fail() -> sa.Insert:
    """Record failed attempts of jobs whose lease is still live."""
    leases = _leases(*_FAILURE_INPUT)
    failed = (
        sa.update(jobs)
        .where(_runs_under(leases), _lease_is_live())
        .values(_failed_values(leases))
        .returning(*_ended_columns(leases))
        .cte("failed")
    )
    return _record_attempts(failed, AttemptOutcome.FAILED, with_error=True)


def _expire() -> sa.Insert:
    """Record lease expiries of jobs whose lease is still expired.

    Rows locked by another transaction are skipped rather than waited for,
    because another recovering worker is handling them or their holder is
    about to change them. So concurrent recoveries change each job once and
    never wait on each other. A skipped job that the lock holder left
    unchanged is still expired, so a later sweep finds it again.
    """
    leases = _leases(*_FAILURE_INPUT)
    expired = (
        sa.select(jobs.c.id, *(leases.c[name] for _, name, _ in _FAILURE_INPUT))
        .where(_runs_under(leases), sa.not_(_lease_is_live()))
        .with_for_update(of=jobs, skip_locked=True)
        .cte("expired")
    )
    moved = (
        sa.update(jobs)
        .where(jobs.c.id == sa.any_(_ids_of(expired)), jobs.c.id == expired.c.id)
        .values(_failed_values(expired))
        .returning(*_ended_columns(expired))
        .cte("moved")
    )
    return _record_attempts(
        moved, AttemptOutcome.LEASE_EXPIRED, with_error=True
    ).add_cte(expired)


def _release() -> sa.Insert:
    """Hand jobs back to PENDING, mirroring Job.released.

    The attempt is recorded with its number before the release takes it
    back, so the leased rows are read and locked first.
    """
    leases = _leases()
    locked = (
        sa.select(jobs.c.id, jobs.c.attempt, jobs.c.worker_id, jobs.c.started_at)
        .where(_runs_under(leases), _lease_is_live())
        .with_for_update(of=jobs)
        .cte("locked")
    )
    released = (
        sa.update(jobs)
        .where(jobs.c.id == sa.any_(_ids_of(locked)))
        .values(
            state=text_constant(JobState.PENDING.value),
            attempt=sa.func.greatest(jobs.c.attempt - 1, 0),
            run_at=NOW,
            lease_token=sa.null(),
            lease_expires_at=sa.null(),
            updated_at=NOW,
        )
        .returning(jobs.c.id, _notify_if_due())
        .cte("released")
    )
    ended = (
        sa.select(
            locked.c.id, locked.c.attempt, locked.c.worker_id, locked.c.started_at
        )
        .join(released, released.c.id == locked.c.id)
        .cte("ended")
    )
    return (
        _record_attempts(ended, AttemptOutcome.RELEASED, with_error=False)
        .add_cte(locked)
        .add_cte(released)
    )


def _find_expired() -> sa.Select[tuple[object, ...]]:
    return (
        sa.select(*jobs.c)
        .where(is_in_progress(), jobs.c.lease_expires_at <= NOW)
        .order_by(jobs.c.lease_expires_at, jobs.c.id)
        .limit(sa.bindparam("limit", type_=sa.Integer))
    )


def _moved_with_attempts(
    values: dict[str, object], notify: bool
) -> sa.Select[tuple[object, ...]]:
    """Move one job out of an expected state; return it with its attempts."""
    returned = [*jobs.c, _notify_if_due()] if notify else [*jobs.c]
    moved = (
        sa.update(jobs)
        .where(
            jobs.c.id == sa.bindparam("job_id", type_=sa.BigInteger),
            jobs.c.state == sa.bindparam("expected", type_=sa.Text),
        )
        .values(values)
        .returning(*returned)
        .cte("moved")
    )
    columns = [moved.c[column.name] for column in jobs.c]
    return sa.select(*columns, attempts_json(moved.c.id))


def _cancel() -> sa.Select[tuple[object, ...]]:
    """Mirror Job.cancelled."""
    return _moved_with_attempts(
        {
            "state": text_constant(JobState.CANCELLED.value),
            "finished_at": NOW,
            "updated_at": NOW,
        },
        notify=False,
    )


def _requeue() -> sa.Select[tuple[object, ...]]:
    """Mirror Job.requeued: a fresh attempt budget, due now; history is kept."""
    return _moved_with_attempts(
        {
            "state": text_constant(JobState.PENDING.value),
            "attempt": 0,
            "run_at": NOW,
            "finished_at": sa.null(),
            "worker_id": sa.null(),
            "updated_at": NOW,
        },
        notify=True,
    )


def list_jobs(
    states: bool, queues: bool, tasks: bool, before_id: bool
) -> sa.Select[tuple[object, ...]]:
    """List jobs newest first; each flag adds the filter of that name."""
    query = sa.select(*jobs.c, attempts_json(jobs.c.id))
    if states:
        query = query.where(jobs.c.state == sa.any_(_array("states", sa.Text())))
    if queues:
        query = query.where(jobs.c.queue == sa.any_(_array("queues", sa.Text())))
    if tasks:
        query = query.where(jobs.c.task == sa.any_(_array("tasks", sa.Text())))
    if before_id:
        query = query.where(jobs.c.id < sa.bindparam("before_id", type_=sa.BigInteger))
    return query.order_by(jobs.c.id.desc()).limit(
        sa.bindparam("limit", type_=sa.Integer)
    )


@functools.cache
def list_jobs_for_driver(
    states: bool, queues: bool, tasks: bool, before_id: bool
) -> DriverStatement:
    """Return list_jobs compiled for asyncpg, compiling each variant once."""
    return for_driver(list_jobs(states, queues, tasks, before_id))


INSERT_JOBS = for_driver(_insert_jobs(keyed=True))
INSERT_UNKEYED_JOBS = for_driver(_insert_jobs(keyed=False))
INSERT_JOB = for_driver(_insert_job(keyed=True))
INSERT_UNKEYED_JOB = for_driver(_insert_job(keyed=False))
SELECT_BY_KEYS = for_driver(_select_by_keys())
SELECT_JOB = for_driver(
    sa.select(*jobs.c, attempts_json(jobs.c.id)).where(
        jobs.c.id == sa.bindparam("job_id", type_=sa.BigInteger)
    )
)
COUNT_BY_QUEUE_AND_STATE = for_driver(
    sa.select(jobs.c.queue, jobs.c.state, sa.func.count().label("total"))
    .group_by(jobs.c.queue, jobs.c.state)
    .order_by(jobs.c.queue, jobs.c.state)
)
CLAIM = for_driver(_claim())
EXTEND_LEASES = for_driver(_extend_leases())
COMPLETE = for_driver(_complete())
FAIL = for_driver(_fail())
EXPIRE = for_driver(_expire())
RELEASE = for_driver(_release())
FIND_EXPIRED = for_driver(_find_expired())
CANCEL = for_driver(_cancel())
REQUEUE = for_driver(_requeue())
SELECT_NOW = for_driver(sa.select(NOW))
