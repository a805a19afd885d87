"""Job states and the one table of legal transitions."""

from __future__ import annotations

import enum

from conveyor.domain.errors import IllegalTransition


class JobState(enum.StrEnum):
    PENDING = "PENDING"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    DEAD = "DEAD"
    CANCELLED = "CANCELLED"


# FAILED means "failed, waiting for its backoff"; once due it is claimed again.
CLAIMABLE_STATES: frozenset[JobState] = frozenset({JobState.PENDING, JobState.FAILED})

# States that no worker will ever pick up again without an operator's requeue.
FINISHED_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.DEAD, JobState.CANCELLED}
)

CANCELLABLE_STATES: frozenset[JobState] = frozenset({JobState.PENDING, JobState.FAILED})
REQUEUEABLE_STATES: frozenset[JobState] = frozenset(
    {JobState.DEAD, JobState.FAILED, JobState.CANCELLED}
)

LEGAL_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.IN_PROGRESS, JobState.CANCELLED}),
    JobState.IN_PROGRESS: frozenset(
        {
            JobState.COMPLETED,
            JobState.FAILED,
            JobState.DEAD,
            # A draining worker hands back a job it did not finish.
            JobState.PENDING,
        }
    ),
    JobState.FAILED: frozenset(
        {JobState.IN_PROGRESS, JobState.CANCELLED, JobState.PENDING}
    ),
    JobState.DEAD: frozenset({JobState.PENDING}),
    JobState.CANCELLED: frozenset({JobState.PENDING}),
    JobState.COMPLETED: frozenset(),
}


def is_legal(current: JobState, target: JobState) -> bool:
    return target in LEGAL_TRANSITIONS[current]


def check_transition(job_id: int | None, current: JobState, target: JobState) -> None:
    """Raise IllegalTransition unless the lifecycle allows current -> target."""
    if not is_legal(current, target):
        raise IllegalTransition(job_id, current, target)
