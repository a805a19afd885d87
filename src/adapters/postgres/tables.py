"""SQLAlchemy Core tables of the PostgreSQL job store.

The current attempt of a running job lives in its `jobs` row, in worker_id
and started_at. A `job_attempts` row is written when an attempt fails,
expires or is released, by the same statement that changes the job.

A completed attempt gets no `job_attempts` row. The `jobs` row describes
it fully (attempt, worker_id, started_at, finished_at, state COMPLETED),
and since COMPLETED is final, no later attempt overwrites those columns.
Readers add the completed attempt from the row. Stores written before
this rule may still hold a COMPLETED `job_attempts` row, and readers then
use that row instead.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from conveyor.domain.job import AttemptOutcome
from conveyor.domain.states import CLAIMABLE_STATES, JobState

metadata = sa.MetaData()

Timestamp = sa.DateTime(timezone=True)

jobs = sa.Table(
    "jobs",
    metadata,
    # Ids grow in submission order.
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("task", sa.Text, nullable=False),
    sa.Column("queue", sa.Text, nullable=False),
    sa.Column("payload", postgresql.JSONB(none_as_null=False), nullable=False),
    sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
    sa.Column("state", sa.Text, nullable=False),
    sa.Column("run_at", Timestamp, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
    sa.Column("max_attempts", sa.Integer, nullable=False),
    sa.Column("idempotency_key", sa.Text),
    # Hash of the request that created the job, to spot a reused key.
    sa.Column("fingerprint", sa.Text),
    sa.Column("worker_id", sa.Text),
    sa.Column("lease_token", postgresql.UUID(as_uuid=True)),
    sa.Column("lease_expires_at", Timestamp),
    # Start of the current attempt, or of the last one once it ended.
    sa.Column("started_at", Timestamp),
    sa.Column("finished_at", Timestamp),
    sa.Column("result", postgresql.JSONB(none_as_null=False)),
    sa.Column("last_error_type", sa.Text),
    sa.Column("last_error_message", sa.Text),
    sa.Column("last_error_traceback", sa.Text),
    sa.Column("created_at", Timestamp, nullable=False, server_default=sa.func.now()),
    sa.Column("updated_at", Timestamp, nullable=False, server_default=sa.func.now()),
    # Room on each page for the new versions that claims and completions
    # write (migration 0002).
    postgresql_with={"fillfactor": 85},
)

# Ended attempts except the completed one, which its jobs row describes.
job_attempts = sa.Table(
    "job_attempts",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column(
        "job_id",
        sa.BigInteger,
        sa.ForeignKey("jobs.id", ondelete="CASCADE", name="job_attempts_job_id_fkey"),
        nullable=False,
    ),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("worker_id", sa.Text, nullable=False),
    sa.Column("started_at", Timestamp, nullable=False),
    sa.Column("finished_at", Timestamp, nullable=False),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("error_type", sa.Text),
    sa.Column("error_message", sa.Text),
    sa.Column("error_traceback", sa.Text),
    sa.Index("job_attempts_job_id_idx", "job_id", "id"),
)


_DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


def text_constant(value: str) -> sa.ColumnElement[str]:
    """Return `value` as a quoted SQL literal, rendered into the statement text.

    Constants are part of the SQL text rather than parameters, so that the
    planner can match a query's predicate to a partial index, and so that no
    parameter has to be filled in on every execution.
    """
    quoted = sa.literal(value, sa.Text).compile(
        dialect=_DIALECT, compile_kwargs={"literal_binds": True}
    )
    return sa.literal_column(str(quoted), sa.Text)


def _state_in(states: Iterable[JobState]) -> sa.ColumnElement[bool]:
    return jobs.c.state.in_([text_constant(state.value) for state in sorted(states)])


def is_claimable() -> sa.ColumnElement[bool]:
    """Predicate of the claim index; a claim query must repeat it verbatim."""
    return _state_in(CLAIMABLE_STATES)


def is_in_progress() -> sa.ColumnElement[bool]:
    return jobs.c.state == text_constant(JobState.IN_PROGRESS.value)


jobs.append_constraint(sa.CheckConstraint(_state_in(JobState), name="jobs_state_check"))
jobs.append_constraint(sa.CheckConstraint("attempt >= 0", name="jobs_attempt_check"))
jobs.append_constraint(
    sa.CheckConstraint("max_attempts >= 1", name="jobs_max_attempts_check")
)
# A lease exists exactly while the job runs, and a running job has a worker,
# a start time and a counted attempt.
jobs.append_constraint(
    sa.CheckConstraint(
        sa.or_(
            sa.and_(
                is_in_progress(),
                jobs.c.lease_token.is_not(None),
                jobs.c.lease_expires_at.is_not(None),
                jobs.c.worker_id.is_not(None),
                jobs.c.started_at.is_not(None),
                jobs.c.attempt >= 1,
            ),
            sa.and_(
                sa.not_(is_in_progress()),
                jobs.c.lease_token.is_(None),
                jobs.c.lease_expires_at.is_(None),
            ),
        ),
        name="jobs_lease_check",
    )
)
job_attempts.append_constraint(
    sa.CheckConstraint(
        job_attempts.c.outcome.in_(
            [text_constant(outcome.value) for outcome in AttemptOutcome]
        ),
        name="job_attempts_outcome_check",
    )
)

sa.Index(
    "jobs_idempotency_key_key",
    jobs.c.idempotency_key,
    unique=True,
    postgresql_where=jobs.c.idempotency_key.is_not(None),
)
# Only claimable jobs are in this index, so it stays small however many
# finished jobs the table keeps. Its column order is the claim order.
sa.Index(
    "jobs_claim_idx",
    jobs.c.queue,
    jobs.c.priority.desc(),
    jobs.c.run_at,
    jobs.c.id,
    postgresql_where=is_claimable(),
)
sa.Index(
    "jobs_lease_expires_at_idx",
    jobs.c.lease_expires_at,
    postgresql_where=is_in_progress(),
)
