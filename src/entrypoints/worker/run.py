"""Run one job's handler under its timeout and turn what happened into an Outcome."""

from __future__ import annotations

import asyncio
import concurrent.futures.thread
import contextvars
import functools
import os
import traceback
from collections.abc import Coroutine, Generator
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import msgspec

from conveyor.domain.job import ErrorInfo, Job, JsonValue, WorkerId
from conveyor.entrypoints.logging import debug_enabled
from conveyor.entrypoints.tasks import JobContext, TaskRegistry, TaskSpec
from conveyor.entrypoints.worker.holding import HeldJob
from conveyor.entrypoints.worker.timing import Deadlines, Timer

# Limits on what one attempt's error record keeps.
MAX_ERROR_MESSAGE_CHARS = 1000
MAX_TRACEBACK_CHARS = 4000

_SCALARS = (type(None), bool, int, str)


@dataclass(frozen=True, slots=True)
class Succeeded:
    result: JsonValue


@dataclass(frozen=True, slots=True)
class Failed:
    """The handler raised, timed out or returned something that is not JSON."""

    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class UnknownTask:
    """No handler is registered for the job's task; no retry can fix that here."""

    error: ErrorInfo


Outcome = Succeeded | Failed | UnknownTask


class TaskTimedOut(Exception):
    """An attempt ran longer than its task's timeout."""


class HandlerCancelled(Exception):
    """The handler raised CancelledError although nothing cancelled its job."""


class TaskRunner:
    """Calls handlers: async ones on the event loop, sync ones in `executor`.

    A timeout cancels an async handler. A sync handler's thread cannot be
    stopped, so the attempt is recorded as timed out while the thread runs on.
    `abandoned_threads` counts those threads until they end.
    """

    def __init__(
        self,
        registry: TaskRegistry,
        worker_id: WorkerId,
        default_timeout: float,
        executor: Executor,
        timer: Timer,
        log: Any,
    ) -> None:
        self._registry = registry
        self._worker_id = worker_id
        self._default_timeout = default_timeout
        self._executor = executor
        self._timer = timer
        self._log = log
        self._debug = debug_enabled(log)
        self._deadlines = Deadlines(timer)
        self.abandoned_threads = 0

    async def run(
        self, held: HeldJob, context: contextvars.Context | None = None
    ) -> Outcome:
        """Run the job's handler and return its outcome.

        A CancelledError from outside the handler (a shutdown) propagates.

        An async handler runs in `context` (a copy of the current context
        when None), so that context variables it sets stay with its job.
        """
        job = held.job
        spec = self._registry.get(job.task)
        if spec is None:
            return UnknownTask(
                ErrorInfo(
                    type="UnknownTask",
                    message=(
                        f"no task named {job.task!r} is registered in worker "
                        f"{self._worker_id}; known tasks: {self._registry.describe_names()}"
                    ),
                )
            )

        held.started_at = self._timer.monotonic()
        if self._debug:
            self._log.debug("job_started", **held.fields)
        timeout = spec.timeout if spec.timeout is not None else self._default_timeout
        try:
            result = await self._call(spec, job, timeout, context)
        except TaskTimedOut as exc:
            return Failed(ErrorInfo(type="TaskTimeout", message=str(exc)))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt or GeneratorExit raised by a
            # handler ends its attempt, not the worker: the worker's own stop
            # signals arrive through the event loop's signal handlers.
            return Failed(error_info(exc))
        return _as_json(result)

    async def _call(
        self,
        spec: TaskSpec,
        job: Job,
        limit: float,
        context: contextvars.Context | None,
    ) -> object:
        """Await the handler; raise TaskTimedOut once `limit` seconds have passed.

        The timeout cancels this task itself and takes the cancellation back
        with uncancel(), as asyncio.timeout() does, so a job costs one entry
        in the shared Deadlines rather than a second task or its own timer.
        A cancellation from elsewhere (shutdown) still propagates. The task
        runs job after job, so cancellations are counted from the job's
        start: one the handler left behind (a failed TaskGroup does on
        Python 3.11) or a CancelledError the handler raised itself (from a
        child task it awaited) fails this job and nothing else.
        """
        task = asyncio.current_task()
        assert task is not None
        cancelling_before = task.cancelling()
        expired = False

        def expire() -> None:
            nonlocal expired
            expired = True
            task.cancel()

        deadline = self._deadlines.add(limit, expire)
        try:
            result = await self._invoke(spec, job, context)
        except asyncio.CancelledError as exc:
            if expired:
                result = None
            elif task.cancelling() > cancelling_before:
                raise
            else:
                raise HandlerCancelled(
                    "the handler raised CancelledError without the job being "
                    "cancelled, for example by awaiting a cancelled task"
                ) from exc
        finally:
            self._deadlines.remove(deadline)

        if expired:
            if task.uncancel() > cancelling_before:
                raise asyncio.CancelledError
            raise TaskTimedOut(_timeout_message(spec, limit))
        return result

    async def _invoke(
        self, spec: TaskSpec, job: Job, context: contextvars.Context | None
    ) -> object:
        keywords: dict[str, object] = {}
        if spec.takes_context:
            keywords["context"] = JobContext(
                job_id=job.id,
                task=job.task,
                queue=job.queue,
                attempt=job.attempt,
                max_attempts=job.max_attempts,
                worker_id=self._worker_id,
            )
        if spec.is_async:
            handler = spec.function(job.payload, **keywords)
            return await run_in_context(handler, context or contextvars.copy_context())

        call = functools.partial(spec.function, job.payload, **keywords)
        # The thread runs the handler in the job's context, as for an async
        # handler; a pool thread keeps no context of its own between jobs.
        job_context = context or contextvars.copy_context()
        future = self._executor.submit(job_context.run, call)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            if not future.done():
                # NOTE: Python cannot stop a running thread. The handler runs
                # on and keeps one thread of the pool busy until it returns.
                self.abandoned_threads += 1
                future.add_done_callback(self._thread_ended)
            raise

    def _thread_ended(self, _future: Future[object]) -> None:
        self.abandoned_threads -= 1


class _Suspend:
    """Awaitable that hands `value` to the task running it and returns the reply."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __await__(self) -> Generator[object, object, object]:
        return (yield self.value)


async def run_in_context(
    coroutine: Coroutine[object, object, object], context: contextvars.Context
) -> object:
    """Await `coroutine`, running each of its steps inside `context`.

    This does what a task created with that context would do, without the
    cost of a task. The awaiting task stays the current task, so waits,
    cancellation and asyncio.timeout() in the coroutine act on that task.
    Each value the coroutine yields (a future to wait for) goes up to the
    task. The task's reply, or an exception thrown into it, goes back down.
    """
    reply: object = None
    error: BaseException | None = None
    while True:
        try:
            if error is None:
                yielded = context.run(coroutine.send, reply)
            else:
                yielded = context.run(coroutine.throw, error)
        except StopIteration as stop:
            return stop.value
        error = None
        try:
            reply = await _Suspend(yielded)
        except BaseException as exc:  # the coroutine decides what to do with it
            error = exc
            reply = None


def _timeout_message(spec: TaskSpec, timeout: float) -> str:
    if spec.is_async:
        return f"task {spec.name!r} ran longer than its {timeout:g} s timeout and was cancelled"
    return (
        f"task {spec.name!r} ran longer than its {timeout:g} s timeout; its thread "
        "cannot be stopped and runs on in the background"
    )


def _as_json(result: object) -> Outcome:
    """Return the result as plain JSON values, or a failure if it has no JSON form.

    Containers go through an encode and decode round trip, so tuples become
    lists and the store receives exactly what JSON can carry.
    """
    if isinstance(result, _SCALARS):
        return Succeeded(result)
    try:
        decoded: JsonValue = msgspec.json.decode(msgspec.json.encode(result))
    except (TypeError, ValueError, msgspec.MsgspecError) as exc:
        return Failed(
            ErrorInfo(
                type="ResultNotSerializable",
                message=f"the task returned {type(result).__name__}, which is not JSON-serialisable: {exc}",
            )
        )
    return Succeeded(decoded)


def error_info(error: BaseException) -> ErrorInfo:
    """Describe an exception for the attempt record, cut to a few KB.

    The traceback starts at the handler: frames of the worker and of the
    thread pool that called it tell the reader nothing about the failure.
    """
    message = str(error) or type(error).__name__
    if len(message) > MAX_ERROR_MESSAGE_CHARS:
        message = message[: MAX_ERROR_MESSAGE_CHARS - 3] + "..."
    formatted = "".join(
        traceback.format_exception(type(error), error, _handler_frames(error))
    )
    # The end of a traceback names the failing line, so keep the end.
    if len(formatted) > MAX_TRACEBACK_CHARS:
        formatted = "...\n" + formatted[-(MAX_TRACEBACK_CHARS - 4) :]
    return ErrorInfo(
        type=type(error).__qualname__, message=message, traceback=formatted
    )


_CALLER_FOLDERS = (
    os.path.dirname(__file__) + os.sep,
    os.path.dirname(concurrent.futures.thread.__file__) + os.sep,
)


def _handler_frames(error: BaseException) -> TracebackType | None:
    frames = error.__traceback__
    while frames is not None and frames.tb_frame.f_code.co_filename.startswith(
        _CALLER_FOLDERS
    ):
        frames = frames.tb_next
    # An error raised by the worker itself keeps its whole traceback.
    return frames or error.__traceback__
