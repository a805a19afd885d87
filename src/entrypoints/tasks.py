"""Task registry: the Python callables that workers run, registered by name.

A handler is a plain function, async or sync, that receives the job's JSON
payload as its one positional argument. If its signature has a parameter
named `context` (or accepts **kwargs), it also receives a JobContext as the
keyword argument `context`. Its return value, which must be JSON-serialisable,
is stored as the job's result, and any exception it raises fails the attempt.
Workers await async handlers on their event loop and run sync handlers in a
thread pool.

    from conveyor import task

    @task
    def resize(payload):
        ...

    @task("emails.send", queue="mail", max_attempts=10, timeout=30)
    async def send(payload, context):
        ...

`queue` and `max_attempts` are the defaults for jobs of this task that are
submitted without them. `retry` is the RetryPolicy that workers apply to the
task's failures, and `timeout` is how long, in seconds, one attempt may run.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from conveyor.domain.errors import InvalidJobRequest
from conveyor.domain.job import (
    DEFAULT_QUEUE,
    MAX_ATTEMPTS_LIMIT,
    JobId,
    JobRequest,
    WorkerId,
)
from conveyor.domain.retry import RetryPolicy

Handler = Callable[..., Any]
F = TypeVar("F", bound=Handler)


@dataclass(frozen=True, slots=True)
class JobContext:
    """Facts about the running attempt, passed to handlers that accept `context`."""

    job_id: JobId
    task: str
    queue: str
    attempt: int
    max_attempts: int
    worker_id: WorkerId


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """A registered task: its handler and the settings that apply to its jobs."""

    name: str
    function: Handler
    queue: str
    max_attempts: int | None
    retry: RetryPolicy | None
    # Seconds that one attempt may run; None means the worker's default.
    timeout: float | None
    is_async: bool
    takes_context: bool


class TaskNotFound(LookupError):
    """No task is registered under the requested name."""


class TaskRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, TaskSpec] = {}

    def register(
        self,
        function: Handler,
        name: str | None = None,
        *,
        queue: str = DEFAULT_QUEUE,
        max_attempts: int | None = None,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
    ) -> TaskSpec:
        """Register `function` under `name` (its __name__ by default).

        Registering the same function again under the same name returns the
        existing spec, so a module imported twice does no harm. Raises
        ValueError for an invalid name, queue, max_attempts or timeout, for a
        name already taken by another function, and TypeError for a function
        that cannot be called with a payload.
        """
        task_name = name if name is not None else function.__name__
        spec = TaskSpec(
            name=task_name,
            function=function,
            queue=queue,
            max_attempts=max_attempts,
            retry=retry,
            timeout=timeout,
            is_async=_is_async(function),
            takes_context=_takes_context(function),
        )
        _validate(spec)

        existing = self._specs.get(task_name)
        if existing is not None:
            if existing.function is function:
                return existing
            raise ValueError(
                f"task name {task_name!r} is already registered to "
                f"{_describe(existing.function)}; pick another name for "
                f"{_describe(function)}"
            )
        self._specs[task_name] = spec
        return spec

    def get(self, name: str) -> TaskSpec | None:
        return self._specs.get(name)

    def require(self, name: str) -> TaskSpec:
        """Return the spec for `name` or raise TaskNotFound listing the known names."""
        spec = self._specs.get(name)
        if spec is None:
            raise TaskNotFound(
                f"no task named {name!r} is registered; known tasks: {self.describe_names()}"
            )
        return spec

    def names(self) -> list[str]:
        return sorted(self._specs)

    def describe_names(self, limit: int = 20) -> str:
        """Return the registered names as one short comma-separated line."""
        names = self.names()
        listing = ", ".join(names[:limit]) or "(none)"
        if len(names) > limit:
            listing += f" and {len(names) - limit} more"
        return listing

    def retry_policy(self, name: str, default: RetryPolicy) -> RetryPolicy:
        """Return the task's own RetryPolicy, or `default` when it has none."""
        spec = self._specs.get(name)
        if spec is None or spec.retry is None:
            return default
        return spec.retry

    def load_modules(self, names: Iterable[str]) -> None:
        """Import the modules whose @task decorators register their tasks.

        `@task` registers into `default_registry`, so modules loaded this way
        add their tasks there. Raises ImportError naming the module that failed.
        """
        for module_name in names:
            try:
                importlib.import_module(module_name)
            except ImportError as exc:
                raise ImportError(
                    f"cannot import task module {module_name!r}: {exc}; "
                    "check CONVEYOR_TASK_MODULES and that the module is on sys.path"
                ) from exc

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)


default_registry = TaskRegistry()


@overload
def task(name: F, /) -> F: ...


@overload
def task(
    name: str | None = None,
    /,
    *,
    queue: str = DEFAULT_QUEUE,
    max_attempts: int | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Callable[[F], F]: ...


def task(
    name: str | Handler | None = None,
    /,
    *,
    queue: str = DEFAULT_QUEUE,
    max_attempts: int | None = None,
    retry: RetryPolicy | None = None,
    timeout: float | None = None,
) -> Handler:
    """Register a handler in `default_registry`; use as `@task` or `@task("name", ...)`.

    The decorated function is returned unchanged, so it can still be called
    directly.
    """
    if callable(name):
        default_registry.register(name)
        return name

    def decorate(function: F) -> F:
        default_registry.register(
            function,
            name,
            queue=queue,
            max_attempts=max_attempts,
            retry=retry,
            timeout=timeout,
        )
        return function

    return decorate


def _is_async(function: Handler) -> bool:
    if inspect.iscoroutinefunction(function):
        return True
    # An instance whose __call__ is a coroutine function is async as well.
    call = getattr(function, "__call__", None)  # noqa: B004
    return inspect.iscoroutinefunction(call)


def _takes_context(function: Handler) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):
        return False
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if parameter.name == "context" and parameter.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            return True
    return False


def _validate(spec: TaskSpec) -> None:
    try:
        JobRequest(spec.name, queue=spec.queue)
    except InvalidJobRequest as exc:
        raise ValueError(f"invalid task registration: {exc}") from None
    if spec.max_attempts is not None and not (
        1 <= spec.max_attempts <= MAX_ATTEMPTS_LIMIT
    ):
        raise ValueError(
            f"task {spec.name!r}: max_attempts {spec.max_attempts} is out of "
            f"range [1, {MAX_ATTEMPTS_LIMIT}]"
        )
    if spec.timeout is not None and not spec.timeout > 0:
        raise ValueError(
            f"task {spec.name!r}: timeout must be a positive number of seconds, "
            f"got {spec.timeout}"
        )
    _check_callable_with_payload(spec)


def _check_callable_with_payload(spec: TaskSpec) -> None:
    try:
        signature = inspect.signature(spec.function)
    except (TypeError, ValueError):
        # Some builtins have no signature, so a mismatch shows at the first call.
        return
    arguments: dict[str, object] = {"context": None} if spec.takes_context else {}
    try:
        signature.bind(None, **arguments)
    except TypeError as exc:
        raise TypeError(
            f"task {spec.name!r}: {_describe(spec.function)} must accept the "
            f"payload as one positional argument ({exc})"
        ) from None


def _describe(function: Handler) -> str:
    module = getattr(function, "__module__", None) or "?"
    name = getattr(function, "__qualname__", None) or repr(function)
    return f"{module}.{name}"
