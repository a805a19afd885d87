"""Create the jobs and job_attempts tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-04

State and outcome names are written out here, not imported from the
domain, so that this revision creates the same schema whatever the domain
later becomes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("queue", sa.Text, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False, server_default="0"),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("run_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
        sa.Column("max_attempts", sa.Integer, nullable=False),
        sa.Column("idempotency_key", sa.Text),
        sa.Column("fingerprint", sa.Text),
        sa.Column("worker_id", sa.Text),
        sa.Column("lease_token", postgresql.UUID(as_uuid=True)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("result", postgresql.JSONB),
        sa.Column("last_error_type", sa.Text),
        sa.Column("last_error_message", sa.Text),
        sa.Column("last_error_traceback", sa.Text),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.CheckConstraint(
            "state IN ('CANCELLED', 'COMPLETED', 'DEAD', 'FAILED',"
            " 'IN_PROGRESS', 'PENDING')",
            name="jobs_state_check",
        ),
        sa.CheckConstraint("attempt >= 0", name="jobs_attempt_check"),
        sa.CheckConstraint("max_attempts >= 1", name="jobs_max_attempts_check"),
        sa.CheckConstraint(
            "state = 'IN_PROGRESS' AND lease_token IS NOT NULL"
            " AND lease_expires_at IS NOT NULL AND worker_id IS NOT NULL"
            " AND started_at IS NOT NULL AND attempt >= 1"
            " OR state != 'IN_PROGRESS' AND lease_token IS NULL"
            " AND lease_expires_at IS NULL",
            name="jobs_lease_check",
        ),
    )
    op.create_index(
        "jobs_idempotency_key_key",
        "jobs",
        ["idempotency_key"],
        unique=True,
        postgresql_where=sa.text("idempotency_key IS NOT NULL"),
    )
    op.create_index(
        "jobs_claim_idx",
        "jobs",
        ["queue", sa.text("priority DESC"), "run_at", "id"],
        postgresql_where=sa.text("state IN ('FAILED', 'PENDING')"),
    )
    op.create_index(
        "jobs_lease_expires_at_idx",
        "jobs",
        ["lease_expires_at"],
        postgresql_where=sa.text("state = 'IN_PROGRESS'"),
    )

    op.create_table(
        "job_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "job_id",
            sa.BigInteger,
            sa.ForeignKey(
                "jobs.id", ondelete="CASCADE", name="job_attempts_job_id_fkey"
            ),
            nullable=False,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("worker_id", sa.Text, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("error_type", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("error_traceback", sa.Text),
        sa.CheckConstraint(
            "outcome IN ('COMPLETED', 'FAILED', 'LEASE_EXPIRED', 'RELEASED')",
            name="job_attempts_outcome_check",
        ),
    )
    op.create_index("job_attempts_job_id_idx", "job_attempts", ["job_id", "id"])


def downgrade() -> None:
    op.drop_table("job_attempts")
    op.drop_table("jobs")
