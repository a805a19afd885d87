"""Retry policy: a table of attempt -> delay, caps, jitter and giving up."""

from __future__ import annotations

from datetime import timedelta

import pytest

from conveyor.domain.retry import GiveUp, RetryAt, RetryPolicy

POLICY = RetryPolicy(base_delay=2, factor=3, max_delay=100, jitter=0.5)


@pytest.mark.parametrize(
    ("attempt", "random_value", "seconds"),
    [
        (1, 0.0, 2),  # the first retry waits the base delay
        (2, 0.0, 6),  # then grows by the factor
        (3, 0.0, 18),
        (4, 0.0, 54),
        (5, 0.0, 100),  # 162 is capped at max_delay
        (6, 0.0, 100),
        (1, 0.5, 1.5),  # jitter 0.5 * r=0.5 removes a quarter
        (4, 0.999, 54 * (1 - 0.5 * 0.999)),  # never below half with jitter 0.5
        (5, 0.5, 75),  # jitter applies to the capped delay too
        (10**9, 0.0, 100),  # a huge attempt number neither overflows nor hangs
        (2**63, 0.25, 87.5),
    ],
)
def test_backoff_table(attempt: int, random_value: float, seconds: float) -> None:
    assert POLICY.backoff_seconds(attempt, random_value) == pytest.approx(seconds)


def test_no_jitter_is_exact() -> None:
    policy = RetryPolicy(base_delay=1, factor=2, max_delay=60, jitter=0)

    delays = [policy.backoff_seconds(n, 0.9) for n in range(1, 9)]

    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]


def test_zero_base_delay_retries_at_once() -> None:
    policy = RetryPolicy(base_delay=0, factor=2, max_delay=0, jitter=0)

    assert policy.backoff_seconds(50, 0.3) == 0


def test_factor_one_is_constant() -> None:
    policy = RetryPolicy(base_delay=5, factor=1, max_delay=60, jitter=0)

    assert policy.backoff_seconds(1000, 0.0) == 5


def test_decide_retries_while_attempts_left() -> None:
    decision = POLICY.decide(attempt=2, max_attempts=3, random_value=0.0)

    assert decision == RetryAt(timedelta(seconds=6))


def test_decide_gives_up_on_last_attempt() -> None:
    decision = POLICY.decide(attempt=3, max_attempts=3, random_value=0.0)

    assert isinstance(decision, GiveUp)
    assert decision.reason == "attempt 3 of 3 failed; no attempts left"


def test_decide_gives_up_past_budget() -> None:
    assert isinstance(
        POLICY.decide(attempt=9, max_attempts=3, random_value=0.0), GiveUp
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"base_delay": -1}, "base_delay must be >= 0"),
        ({"factor": 0.5}, "factor must be >= 1"),
        (
            {"base_delay": 10, "max_delay": 5},
            "max_delay (5) must be >= base_delay (10)",
        ),
        ({"jitter": 1.5}, "jitter must be within [0, 1]"),
        ({"base_delay": float("nan")}, "base_delay must be >= 0"),
    ],
)
def test_invalid_policy_rejected(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        RetryPolicy(**kwargs)

    assert message in str(caught.value)


@pytest.mark.parametrize(("attempt", "random_value"), [(0, 0.0), (1, 1.0), (1, -0.1)])
def test_invalid_arguments_rejected(attempt: int, random_value: float) -> None:
    with pytest.raises(ValueError):
        POLICY.backoff_seconds(attempt, random_value)
