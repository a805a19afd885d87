"""Join concurrent single-job submissions into one store call.

Each POST /jobs request is validated on its own. The job requests that
arrive while earlier store calls are running wait, and then go to the store
together through SubmitJobs.submit_many: one INSERT statement and one commit
for all of them. Each request gets the response of its own job only after
that commit, as if it had been stored alone.

Only requests without an idempotency key are joined. submit_many rejects
the whole call for one reused key, so keyed requests still go through
SubmitJobs.submit one by one.
Jobs without a key do not fail one at a time: the PostgreSQL store inserts
them with one statement, which stores all of them or none, so an error is
raised to every request of that call.
"""

from __future__ import annotations

import asyncio
from collections import deque

from conveyor.application.ports import Submission
from conveyor.application.submitting import SubmitJobs
from conveyor.domain.job import JobRequest

# Jobs per store call, well under SubmitJobs' batch limit.
MAX_JOINED = 500


class SubmitBatcher:
    """Submit single jobs, joining the unkeyed ones that wait at the same time.

    At most `max_calls` store calls run at once; the requests that arrive
    while all of them run are sent together by the next call.
    """

    def __init__(self, submit_jobs: SubmitJobs, max_calls: int) -> None:
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls}")
        self._submit_jobs = submit_jobs
        self._max_calls = max_calls
        self._calls = 0
        self._waiting: deque[tuple[JobRequest, asyncio.Future[Submission]]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, request: JobRequest) -> Submission:
        if request.idempotency_key is not None:
            return await self._submit_jobs.submit(request)

        loop = asyncio.get_running_loop()
        future: asyncio.Future[Submission] = loop.create_future()
        self._waiting.append((request, future))
        if self._calls < self._max_calls:
            self._calls += 1
            task = loop.create_task(self._drain())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _drain(self) -> None:
        try:
            # Requests read in the same turn of the event loop join this call.
            await asyncio.sleep(0)
            while self._waiting:
                count = min(len(self._waiting), MAX_JOINED)
                batch = [self._waiting.popleft() for _ in range(count)]
                await self._store(batch)
        finally:
            self._calls -= 1

    async def _store(
        self, batch: list[tuple[JobRequest, asyncio.Future[Submission]]]
    ) -> None:
        try:
            submissions = await self._submit_jobs.submit_many(
                [request for request, _ in batch]
            )
        except asyncio.CancelledError:
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), submission in zip(batch, submissions, strict=True):
            # A request whose client went away was cancelled while it waited.
            if not future.done():
                future.set_result(submission)
