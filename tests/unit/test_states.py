"""Every pair of states: legal transitions succeed, illegal ones raise."""

from __future__ import annotations

import itertools

import pytest

from conveyor.domain.errors import IllegalTransition
from conveyor.domain.states import (
    CANCELLABLE_STATES,
    CLAIMABLE_STATES,
    FINISHED_STATES,
    LEGAL_TRANSITIONS,
    REQUEUEABLE_STATES,
    JobState,
    check_transition,
    is_legal,
)

P = JobState.PENDING
R = JobState.IN_PROGRESS
C = JobState.COMPLETED
F = JobState.FAILED
D = JobState.DEAD
X = JobState.CANCELLED

# Written out by hand from the lifecycle diagram, independent of the table
# in the code, so a wrong edit to either one fails this test.
EXPECTED_LEGAL = {
    (P, R),  # claim
    (P, X),  # cancel
    (R, C),  # success
    (R, F),  # error with attempts left, or lease expired
    (R, D),  # error or lease expiry on the last attempt
    (R, P),  # release by a draining worker
    (F, R),  # retry once the backoff has elapsed
    (F, X),  # cancel a job waiting for its retry
    (F, P),  # requeue
    (D, P),  # requeue
    (X, P),  # requeue
}

ALL_PAIRS = list(itertools.product(JobState, repeat=2))


@pytest.mark.parametrize(("current", "target"), ALL_PAIRS, ids=lambda s: s.value)
def test_transition_table(current: JobState, target: JobState) -> None:
    if (current, target) in EXPECTED_LEGAL:
        check_transition(7, current, target)
        assert is_legal(current, target)
    else:
        with pytest.raises(IllegalTransition) as caught:
            check_transition(7, current, target)
        assert caught.value.job_id == 7
        assert caught.value.current is current
        assert caught.value.target is target
        assert f"job 7 cannot move from {current.value} to {target.value}" == str(
            caught.value
        )


def test_table_covers_every_state() -> None:
    assert set(LEGAL_TRANSITIONS) == set(JobState)


def test_completed_is_final() -> None:
    assert LEGAL_TRANSITIONS[C] == frozenset()


def test_state_groups_agree_with_table() -> None:
    assert all(is_legal(state, R) for state in CLAIMABLE_STATES)
    assert all(is_legal(state, X) for state in CANCELLABLE_STATES)
    assert all(is_legal(state, P) for state in REQUEUEABLE_STATES)
    assert not any(is_legal(state, R) for state in FINISHED_STATES)


def test_error_for_new_job_names_it() -> None:
    error = IllegalTransition(None, P, C)

    assert str(error) == "new job cannot move from PENDING to COMPLETED"
