"""The task registry, the @task decorator and the built-in tasks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conveyor.domain.job import JobId, JsonValue, WorkerId
from conveyor.domain.retry import RetryPolicy
from conveyor.entrypoints import builtin_tasks, tasks
from conveyor.entrypoints.builtin_tasks import RequestedFailure, register_builtins
from conveyor.entrypoints.tasks import JobContext, TaskRegistry, task

DEFAULT_POLICY = RetryPolicy(base_delay=1, max_delay=10)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> TaskRegistry:
    """A fresh registry that @task registers into for the test's duration."""
    fresh = TaskRegistry()
    monkeypatch.setattr(tasks, "default_registry", fresh)
    return fresh


def context(attempt: int = 1) -> JobContext:
    return JobContext(
        job_id=JobId(7),
        task="fail",
        queue="default",
        attempt=attempt,
        max_attempts=5,
        worker_id=WorkerId("w1"),
    )


def test_bare_decorator_uses_function_name(registry: TaskRegistry) -> None:
    @task
    def resize(payload: object) -> object:
        return payload

    spec = registry.get("resize")
    assert spec is not None
    assert spec.function is resize
    assert spec.queue == "default"
    assert not spec.is_async
    assert not spec.takes_context


def test_named_decorator_keeps_settings(registry: TaskRegistry) -> None:
    policy = RetryPolicy(base_delay=5, max_delay=50)

    @task("emails.send", queue="mail", max_attempts=9, retry=policy, timeout=3.5)
    async def send(payload: object, context: JobContext) -> None:
        return None

    spec = registry.get("emails.send")
    assert spec is not None
    assert spec.queue == "mail"
    assert spec.max_attempts == 9
    assert spec.retry is policy
    assert spec.timeout == 3.5
    assert spec.is_async
    assert spec.takes_context
    assert registry.names() == ["emails.send"]


def test_decorated_function_stays_callable(registry: TaskRegistry) -> None:
    @task("double")
    def double(payload: int) -> int:
        return payload * 2

    assert double(21) == 42


def test_kwargs_handler_takes_context() -> None:
    registry = TaskRegistry()

    def handler(payload: object, **options: object) -> None:
        return None

    assert registry.register(handler).takes_context


def test_async_callable_object_is_async() -> None:
    class Handler:
        async def __call__(self, payload: object) -> None:
            return None

    registry = TaskRegistry()

    assert registry.register(Handler(), "obj").is_async


def test_same_function_registers_twice() -> None:
    registry = TaskRegistry()

    def handler(payload: object) -> None:
        return None

    first = registry.register(handler, "h")
    second = registry.register(handler, "h")

    assert first is second
    assert len(registry) == 1


def test_taken_name_is_rejected() -> None:
    registry = TaskRegistry()
    registry.register(lambda payload: None, "h")

    with pytest.raises(ValueError, match="'h' is already registered"):
        registry.register(lambda payload: 1, "h")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"name": "has space"}, "invalid task registration: task"),
        ({"name": ""}, "task: must not be empty"),
        ({"name": "ok", "queue": "bad/queue"}, "queue"),
        ({"name": "ok", "max_attempts": 0}, "max_attempts 0 is out of range"),
        ({"name": "ok", "timeout": 0}, "timeout must be a positive number"),
    ],
)
def test_invalid_registration_is_rejected(
    options: dict[str, object], message: str
) -> None:
    registry = TaskRegistry()

    with pytest.raises(ValueError, match=message):
        registry.register(lambda payload: None, **options)  # type: ignore[arg-type]


def test_handler_without_payload_parameter_is_rejected() -> None:
    registry = TaskRegistry()

    def no_arguments() -> None:
        return None

    with pytest.raises(TypeError, match="must accept the payload"):
        registry.register(no_arguments)


def test_retry_policy_falls_back_to_default() -> None:
    registry = TaskRegistry()
    own = RetryPolicy(base_delay=7, max_delay=70)
    registry.register(lambda payload: None, "plain")
    registry.register(lambda payload: None, "tuned", retry=own)

    assert registry.retry_policy("plain", DEFAULT_POLICY) is DEFAULT_POLICY
    assert registry.retry_policy("tuned", DEFAULT_POLICY) is own
    assert registry.retry_policy("unknown", DEFAULT_POLICY) is DEFAULT_POLICY


def test_require_names_known_tasks() -> None:
    registry = TaskRegistry()
    register_builtins(registry)

    with pytest.raises(tasks.TaskNotFound, match="known tasks: echo, fail, sleep"):
        registry.require("missing")


def test_load_modules_registers_decorated_tasks(
    registry: TaskRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "conveyor_test_user_tasks.py"
    module.write_text(
        "from conveyor import task\n"
        "\n"
        "@task('user.hello')\n"
        "def hello(payload):\n"
        "    return 'hello'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "conveyor_test_user_tasks", raising=False)

    registry.load_modules(["conveyor_test_user_tasks"])

    assert "user.hello" in registry


def test_load_modules_names_missing_module() -> None:
    registry = TaskRegistry()

    with pytest.raises(ImportError, match="cannot import task module 'no_such_mod_x'"):
        registry.load_modules(["no_such_mod_x"])


def test_builtins_are_in_default_registry() -> None:
    for name in ("echo", "sleep", "fail"):
        assert name in tasks.default_registry


async def test_echo_returns_payload() -> None:
    assert await builtin_tasks.echo({"a": [1, 2]}) == {"a": [1, 2]}


async def test_sleep_returns_seconds() -> None:
    assert await builtin_tasks.sleep({"seconds": 0}) == {"slept": 0.0}


@pytest.mark.parametrize(
    "payload",
    [None, {}, {"seconds": "1"}, {"seconds": True}, {"seconds": -1}, {"seconds": 1e9}],
)
async def test_sleep_rejects_bad_seconds(payload: object) -> None:
    with pytest.raises(ValueError, match="sleep"):
        await builtin_tasks.sleep(payload)  # type: ignore[arg-type]


def test_fail_always_fails_without_times() -> None:
    with pytest.raises(RequestedFailure, match=r"boom \(attempt 4\)"):
        builtin_tasks.fail({"message": "boom"}, context=context(attempt=4))


def test_fail_without_payload_fails() -> None:
    with pytest.raises(RequestedFailure, match="failed on request"):
        builtin_tasks.fail(None, context=context())


def test_fail_succeeds_after_times() -> None:
    payload: JsonValue = {"message": "flaky", "times": 2}

    with pytest.raises(RequestedFailure):
        builtin_tasks.fail(payload, context=context(attempt=2))
    result = builtin_tasks.fail(payload, context=context(attempt=3))

    assert result == {"failed_attempts": 2}


@pytest.mark.parametrize(
    "payload", [[1], {"times": -1}, {"times": "2"}, {"message": 3}]
)
def test_fail_rejects_bad_payload(payload: object) -> None:
    with pytest.raises(ValueError, match="fail"):
        builtin_tasks.fail(payload, context=context())  # type: ignore[arg-type]
