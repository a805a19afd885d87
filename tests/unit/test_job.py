"""Job requests: validation of every field, fingerprints, entity transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from conveyor.domain.errors import IllegalTransition, InvalidJobRequest
from conveyor.domain.job import ErrorInfo, Job, JobId, JobRequest
from conveyor.domain.states import JobState

NOW = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"task": ""}, "task", "must not be empty"),
        ({"task": "x" * 201}, "task", "the maximum is 200"),
        ({"task": "send email"}, "task", "use ASCII letters, digits"),
        ({"queue": ""}, "queue", "must not be empty"),
        ({"queue": "a/b"}, "queue", "use ASCII letters, digits"),
        ({"queue": "файлы"}, "queue", "use ASCII letters, digits"),
        ({"priority": 40_000}, "priority", "out of range [-32768, 32767]"),
        ({"priority": -40_000}, "priority", "out of range"),
        ({"priority": True}, "priority", "must be an integer"),
        ({"priority": 1.5}, "priority", "must be an integer"),
        ({"max_attempts": 0}, "max_attempts", "out of range [1, 1000]"),
        ({"max_attempts": 1001}, "max_attempts", "out of range"),
        ({"delay": timedelta(seconds=-1)}, "delay", "must not be negative"),
        ({"delay": timedelta(days=366)}, "delay", "at most 365 days"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at", "must include a UTC offset"),
        (
            {"run_at": NOW, "delay": timedelta(seconds=1)},
            "run_at",
            "either run_at or delay",
        ),
        ({"idempotency_key": ""}, "idempotency_key", "must not be empty"),
        ({"idempotency_key": "k" * 256}, "idempotency_key", "the maximum is 255"),
        ({"delay": 5}, "delay", "must be a timedelta"),
        (
            {"run_at": datetime(1, 1, 1, tzinfo=UTC)},
            "run_at",
            "must be 1970-01-01T00:00:00+00:00 or later",
        ),
        ({"run_at": "2030-01-01T00:00:00Z"}, "run_at", "must be a datetime"),
        ({"payload": float("nan")}, "payload", "not a JSON number"),
        ({"payload": {"x": [1, float("inf")]}}, "payload.x[1]", "not a JSON number"),
        ({"payload": {1: "a"}}, "payload", "JSON object keys are strings"),
        ({"payload": {"a", "b"}}, "payload", "is a set, which JSON cannot carry"),
        ({"payload": (1, 2)}, "payload", "is a tuple"),
        ({"payload": {"when": NOW}}, "payload.when", "is a datetime"),
    ],
)
def test_invalid_request_names_field(
    fields: dict[str, Any], field: str, problem: str
) -> None:
    arguments: dict[str, Any] = {"task": "echo", **fields}

    with pytest.raises(InvalidJobRequest) as caught:
        JobRequest(**arguments)

    assert caught.value.field == field
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{field}: ")


def test_nested_json_payload_is_accepted() -> None:
    payload = {"a": [1, 2.5, None, True, {"b": "c"}], "d": -3}

    assert JobRequest("echo", payload).payload == payload


def test_valid_request_keeps_fields() -> None:
    request = JobRequest(
        "mail.send",
        {"to": "a@example.com"},
        queue="mail-high",
        priority=-5,
        run_at=datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=2))),
        max_attempts=7,
        idempotency_key="k-1",
    )

    assert request.task == "mail.send"
    assert request.priority == -5


def test_fingerprint_ignores_key_order() -> None:
    first = JobRequest("t", {"a": 1, "b": [1, 2]})
    second = JobRequest("t", {"b": [1, 2], "a": 1})

    assert first.fingerprint() == second.fingerprint()


@pytest.mark.parametrize(
    "other",
    [
        JobRequest("t", {"a": 2}),
        JobRequest("u", {"a": 1}),
        JobRequest("t", {"a": 1}, queue="q"),
        JobRequest("t", {"a": 1}, priority=1),
        JobRequest("t", {"a": 1}, delay=timedelta(seconds=5)),
        JobRequest("t", {"a": 1}, max_attempts=2),
    ],
)
def test_fingerprint_differs_per_field(other: JobRequest) -> None:
    assert JobRequest("t", {"a": 1}).fingerprint() != other.fingerprint()


def make_job(state: JobState) -> Job:
    return Job(
        id=JobId(1),
        task="t",
        queue="default",
        payload=None,
        priority=0,
        state=state,
        run_at=NOW,
        attempt=0,
        max_attempts=3,
        created_at=NOW,
        updated_at=NOW,
    )


def test_completing_pending_job_raises() -> None:
    with pytest.raises(IllegalTransition):
        make_job(JobState.PENDING).completed(NOW, None)


def test_failure_must_target_failed_or_dead() -> None:
    with pytest.raises(ValueError, match="FAILED or DEAD"):
        make_job(JobState.IN_PROGRESS).failed(
            JobState.COMPLETED, NOW, timedelta(0), ErrorInfo("E", "m")
        )


def test_attempts_left_never_negative() -> None:
    job = make_job(JobState.DEAD)

    assert job.attempts_left == 3
    assert Job(**{**_fields(job), "attempt": 5}).attempts_left == 0


def _fields(job: Job) -> dict[str, Any]:
    return {name: getattr(job, name) for name in job.__dataclass_fields__}
