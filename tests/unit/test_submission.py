"""Submission builds a deferred job once, on its first read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conveyor.application.ports import Submission
from conveyor.domain.job import Job, JobId
from conveyor.domain.states import JobState

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _job(job_id: int) -> Job:
    return Job(
        JobId(job_id), "echo", "default", None, 0, JobState.PENDING, NOW, 0, 3, NOW, NOW
    )


class _Deferred(Submission):
    __slots__ = ("builds",)

    def __init__(self, job_id: int) -> None:
        self._job = None
        self.job_id = JobId(job_id)
        self.created = True
        self.builds = 0

    def _build_job(self) -> Job:
        self.builds += 1
        return _job(self.job_id)


def test_deferred_job_built_once() -> None:
    submission = _Deferred(7)

    assert submission.builds == 0
    assert submission.job_id == 7
    assert submission.job is submission.job
    assert submission.builds == 1


def test_submissions_compare_job_and_created() -> None:
    assert _Deferred(7) == Submission(_job(7), True)
    assert _Deferred(7) != Submission(_job(7), False)
    assert _Deferred(7) != Submission(_job(8), True)
    assert Submission(_job(7), True).job_id == 7


def test_submission_without_builder_raises() -> None:
    class _NoBuilder(Submission):
        def __init__(self) -> None:
            self._job = None
            self.job_id = JobId(1)
            self.created = True

    with pytest.raises(NotImplementedError):
        _ = _NoBuilder().job


def test_submission_not_equal_to_other_types() -> None:
    submission = Submission(_job(7), True)

    assert submission != (submission.job, True)
    assert repr(submission).startswith("Submission(job=Job(id=7")
    assert repr(submission).endswith("created=True)")
