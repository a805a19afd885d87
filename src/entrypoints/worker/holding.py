"""The jobs a worker holds a lease on: prefetched, running or awaiting their write."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from conveyor.application.executing import lease_of
from conveyor.application.ports import Lease
from conveyor.domain.job import Job, JobId


@dataclass(slots=True)
class HeldJob:
    """A claimed job with its lease and the worker's state for it."""

    job: Job
    lease: Lease
    # Monotonic times at which the handler started and returned.
    started_at: float | None = None
    finished_at: float | None = None
    # Set when a heartbeat found that another worker recovered the job.
    lost: bool = False
    # Set while the job's outcome is being written. The store's reply to that
    # write, not a heartbeat, then decides whether the lease was lost.
    writing: bool = False

    @classmethod
    def of(cls, job: Job) -> HeldJob:
        return cls(job, lease_of(job))

    @property
    def fields(self) -> dict[str, object]:
        """Fields job_id, task, queue and attempt for a log line about the job.

        Built on demand: a job that completes logs no line of its own at INFO.
        """
        job = self.job
        return {
            "job_id": job.id,
            "task": job.task,
            "queue": job.queue,
            "attempt": job.attempt,
        }


@dataclass(slots=True)
class HeldJobs:
    """Every job whose lease this worker holds until its outcome is written.

    A job enters when it is claimed and leaves once its completion, failure or
    release reached the store (or was rejected there), so heartbeats cover
    prefetched and running jobs as well as results waiting in a write buffer.
    """

    _jobs: dict[JobId, HeldJob] = field(default_factory=dict)

    def add(self, job: Job) -> HeldJob:
        held = HeldJob.of(job)
        self._jobs[job.id] = held
        return held

    def discard(self, job_id: JobId) -> None:
        self._jobs.pop(job_id, None)

    def live_leases(self) -> list[Lease]:
        """Return the leases that heartbeats should extend (lost ones excluded)."""
        return [held.lease for held in self._jobs.values() if not held.lost]

    def mark_lost(self, job_ids: Iterable[JobId]) -> list[HeldJob]:
        """Flag held jobs as lost and return those newly flagged.

        Jobs whose outcome is being written are skipped, because a heartbeat
        that races with their completion finds them finished, not lost.
        """
        newly_lost = []
        for job_id in job_ids:
            held = self._jobs.get(job_id)
            if held is not None and not held.lost and not held.writing:
                held.lost = True
                newly_lost.append(held)
        return newly_lost

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[HeldJob]:
        return iter(list(self._jobs.values()))

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs
