"""The job entity, its attempt records and the request that creates it."""

from __future__ import annotations

import enum
import hashlib
import json
import math
import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import NewType, Union
from uuid import UUID

from conveyor.domain.errors import InvalidJobRequest
from conveyor.domain.states import JobState, check_transition

JobId = NewType("JobId", int)
WorkerId = NewType("WorkerId", str)
LeaseToken = NewType("LeaseToken", UUID)

JsonValue = Union[  # noqa: UP007 (a recursive alias needs string parts)
    None, bool, int, float, str, list["JsonValue"], dict[str, "JsonValue"]
]

# Limits on what a client may submit. Priorities fit a PostgreSQL smallint.
MIN_PRIORITY = -32768
MAX_PRIORITY = 32767
MAX_ATTEMPTS_LIMIT = 1000
MAX_DELAY = timedelta(days=365)
# Earliest accepted run_at. The database driver stores the smallest datetime
# as -infinity, and no real schedule lies before this.
MIN_RUN_AT = datetime(1970, 1, 1, tzinfo=UTC)
MAX_NAME_LENGTH = 200
MAX_IDEMPOTENCY_KEY_LENGTH = 255
DEFAULT_QUEUE = "default"

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:\-]*$")


class AttemptOutcome(enum.StrEnum):
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    RELEASED = "RELEASED"


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """The error of one failed attempt. `traceback` is an excerpt, not the whole trace."""

    type: str
    message: str
    traceback: str = ""


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of a job by one worker."""

    attempt: int
    worker_id: WorkerId
    started_at: datetime
    finished_at: datetime | None = None
    outcome: AttemptOutcome | None = None
    error: ErrorInfo | None = None


# Task and queue names already found valid. Jobs repeat a few names, so this
# skips the pattern match for nearly every request. Bounded, as names come
# from clients.
_VALID_NAMES: set[str] = set()
_MAX_REMEMBERED_NAMES = 1024


def _check_name(field_name: str, value: str) -> None:
    if value in _VALID_NAMES:
        return
    if not value:
        raise InvalidJobRequest(field_name, "must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidJobRequest(
            field_name,
            f"is {len(value)} characters long; the maximum is {MAX_NAME_LENGTH}",
        )
    if not _NAME_PATTERN.match(value):
        raise InvalidJobRequest(
            field_name,
            f"{value!r} is invalid; use ASCII letters, digits and _ . : - only",
        )
    if len(_VALID_NAMES) < _MAX_REMEMBERED_NAMES:
        _VALID_NAMES.add(value)


_JSON_SCALARS = (str, int, bool, type(None))


def _check_json(payload: object) -> None:
    """Raise InvalidJobRequest unless `payload` is made of JSON values only.

    Callers of the Python API pass any object. Without this check a set or a
    tuple would be stored as a list, NaN as null, and a key that is not a
    string converted, so the worker would receive another payload than the
    one submitted.
    """
    if isinstance(payload, _JSON_SCALARS):
        return
    pending = [(payload, "payload")]
    while pending:
        value, path = pending.pop()
        if isinstance(value, _JSON_SCALARS):
            continue
        if isinstance(value, float):
            if not math.isfinite(value):
                raise InvalidJobRequest(path, f"{value} is not a JSON number")
        elif isinstance(value, list):
            pending.extend((item, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise InvalidJobRequest(
                        path, f"has the key {key!r}; JSON object keys are strings"
                    )
                pending.append((item, f"{path}.{key}"))
        else:
            raise InvalidJobRequest(
                path,
                f"is a {type(value).__name__}, which JSON cannot carry; use "
                "null, true/false, numbers, strings, lists and string-keyed dicts",
            )


@dataclass(frozen=True, slots=True)
class JobRequest:
    """A validated request to create a job.

    At most one of `run_at` and `delay` is set; the store turns a delay into
    a due time with its own clock. `max_attempts` None means the default.
    """

    task: str
    payload: JsonValue = None
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    run_at: datetime | None = None
    delay: timedelta | None = None
    max_attempts: int | None = None
    idempotency_key: str | None = None

    def __post_init__(self) -> None:
        _check_name("task", self.task)
        _check_name("queue", self.queue)
        _check_json(self.payload)
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise InvalidJobRequest("priority", "must be an integer")
        if not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise InvalidJobRequest(
                "priority",
                f"{self.priority} is out of range [{MIN_PRIORITY}, {MAX_PRIORITY}]",
            )
        self._check_schedule()
        if (
            self.max_attempts is not None
            and not 1 <= self.max_attempts <= MAX_ATTEMPTS_LIMIT
        ):
            raise InvalidJobRequest(
                "max_attempts",
                f"{self.max_attempts} is out of range [1, {MAX_ATTEMPTS_LIMIT}]",
            )
        if self.idempotency_key is not None:
            if not self.idempotency_key:
                raise InvalidJobRequest("idempotency_key", "must not be empty")
            if len(self.idempotency_key) > MAX_IDEMPOTENCY_KEY_LENGTH:
                raise InvalidJobRequest(
                    "idempotency_key",
                    f"is {len(self.idempotency_key)} characters long; "
                    f"the maximum is {MAX_IDEMPOTENCY_KEY_LENGTH}",
                )

    def _check_schedule(self) -> None:
        if self.run_at is not None and not isinstance(self.run_at, datetime):
            raise InvalidJobRequest("run_at", "must be a datetime")
        if self.delay is not None and not isinstance(self.delay, timedelta):
            raise InvalidJobRequest("delay", "must be a timedelta")
        if self.run_at is not None and self.delay is not None:
            raise InvalidJobRequest("run_at", "give either run_at or delay, not both")
        if self.run_at is not None and self.run_at.utcoffset() is None:
            raise InvalidJobRequest(
                "run_at", "must include a UTC offset, for example 2030-01-01T00:00:00Z"
            )
        if self.run_at is not None and self.run_at < MIN_RUN_AT:
            raise InvalidJobRequest(
                "run_at", f"must be {MIN_RUN_AT.isoformat()} or later"
            )
        if self.delay is not None:
            if self.delay < timedelta(0):
                raise InvalidJobRequest("delay", "must not be negative")
            if self.delay > MAX_DELAY:
                raise InvalidJobRequest(
                    "delay", f"must be at most {MAX_DELAY.days} days"
                )

    def fingerprint(self) -> str:
        """Hash of every field that defines the request, to spot a reused key."""
        canonical = {
            "task": self.task,
            "payload": self.payload,
            "queue": self.queue,
            "priority": self.priority,
            "run_at": self.run_at.isoformat() if self.run_at else None,
            "delay": self.delay.total_seconds() if self.delay is not None else None,
            "max_attempts": self.max_attempts,
        }
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Job:
    """A unit of work and its place in the lifecycle.

    `attempt` counts the attempts started since submission or the last
    requeue. The lease fields are set only while the job is IN_PROGRESS.
    """

    id: JobId
    task: str
    queue: str
    payload: JsonValue
    priority: int
    state: JobState
    run_at: datetime
    attempt: int
    max_attempts: int
    created_at: datetime
    updated_at: datetime
    idempotency_key: str | None = None
    fingerprint: str | None = None
    worker_id: WorkerId | None = None
    lease_token: LeaseToken | None = None
    lease_expires_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    result: JsonValue = None
    last_error: ErrorInfo | None = None
    attempts: tuple[Attempt, ...] = field(default=())

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempt)

    def _moved(self, target: JobState, now: datetime) -> Job:
        check_transition(self.id, self.state, target)
        return replace(self, state=target, updated_at=now)

    def claimed(
        self,
        worker_id: WorkerId,
        lease_token: LeaseToken,
        now: datetime,
        lease: timedelta,
    ) -> Job:
        return replace(
            self._moved(JobState.IN_PROGRESS, now),
            attempt=self.attempt + 1,
            worker_id=worker_id,
            lease_token=lease_token,
            lease_expires_at=now + lease,
            started_at=now,
        )

    def completed(self, now: datetime, result: JsonValue) -> Job:
        return replace(
            self._moved(JobState.COMPLETED, now),
            result=result,
            finished_at=now,
            lease_token=None,
            lease_expires_at=None,
        )

    def failed(
        self, target: JobState, now: datetime, retry_delay: timedelta, error: ErrorInfo
    ) -> Job:
        """Record a failed attempt: FAILED to retry after `retry_delay`, or DEAD."""
        if target not in (JobState.FAILED, JobState.DEAD):
            raise ValueError(f"a failure leads to FAILED or DEAD, not {target.value}")
        moved = self._moved(target, now)
        return replace(
            moved,
            run_at=now + retry_delay if target is JobState.FAILED else self.run_at,
            finished_at=now if target is JobState.DEAD else None,
            last_error=error,
            lease_token=None,
            lease_expires_at=None,
        )

    def released(self, now: datetime) -> Job:
        """Hand back an unfinished job; the attempt does not count."""
        return replace(
            self._moved(JobState.PENDING, now),
            attempt=max(0, self.attempt - 1),
            run_at=now,
            lease_token=None,
            lease_expires_at=None,
        )

    def cancelled(self, now: datetime) -> Job:
        return replace(self._moved(JobState.CANCELLED, now), finished_at=now)

    def requeued(self, now: datetime) -> Job:
        """Run again from scratch with a fresh attempt budget; history is kept."""
        return replace(
            self._moved(JobState.PENDING, now),
            attempt=0,
            run_at=now,
            finished_at=None,
            worker_id=None,
        )

    def with_lease_extended(self, now: datetime, lease: timedelta) -> Job:
        return replace(self, lease_expires_at=now + lease, updated_at=now)
