"""Built-in tasks for demos and tests: echo, sleep and fail.

Importing this module registers them in `default_registry`; call
register_builtins() to add them to another registry.
"""

from __future__ import annotations

import asyncio
import math

from conveyor.domain.job import JsonValue
from conveyor.entrypoints.tasks import JobContext, TaskRegistry, default_registry

# Maximum sleep accepted (one day), because a longer one is most likely a mistake.
MAX_SLEEP_SECONDS = 86_400.0


class RequestedFailure(Exception):
    """Raised by the built-in `fail` task because its payload requested a failure."""


async def echo(payload: JsonValue) -> JsonValue:
    """Return the payload unchanged."""
    return payload


async def sleep(payload: JsonValue) -> JsonValue:
    """Sleep for payload["seconds"] seconds and return {"slept": seconds}."""
    seconds = _sleep_seconds(payload)
    await asyncio.sleep(seconds)
    return {"slept": seconds}


def fail(payload: JsonValue, *, context: JobContext) -> JsonValue:
    """Raise RequestedFailure on the first payload["times"] attempts, or on every one.

    Payload: {"message": str (optional), "times": int (optional)}. Once the
    failures are used up it returns {"failed_attempts": times}.
    """
    message, times = _fail_settings(payload)
    if times is None or context.attempt <= times:
        raise RequestedFailure(f"{message} (attempt {context.attempt})")
    return {"failed_attempts": times}


def register_builtins(registry: TaskRegistry) -> None:
    registry.register(echo, "echo")
    registry.register(sleep, "sleep")
    registry.register(fail, "fail")


def _sleep_seconds(payload: JsonValue) -> float:
    seconds = payload.get("seconds") if isinstance(payload, dict) else None
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise ValueError(
            f'sleep expects a payload like {{"seconds": 1.5}}, got {payload!r}'
        )
    if not math.isfinite(seconds) or not 0 <= seconds <= MAX_SLEEP_SECONDS:
        raise ValueError(
            f"sleep: seconds must be within [0, {MAX_SLEEP_SECONDS:g}], got {seconds}"
        )
    return float(seconds)


def _fail_settings(payload: JsonValue) -> tuple[str, int | None]:
    if payload is None:
        return "failed on request", None
    if not isinstance(payload, dict):
        raise ValueError(
            f'fail expects an object like {{"message": "boom", "times": 2}}, got {payload!r}'
        )
    message = payload.get("message", "failed on request")
    times = payload.get("times")
    if not isinstance(message, str):
        raise ValueError(f"fail: message must be a string, got {message!r}")
    if times is not None and (
        isinstance(times, bool) or not isinstance(times, int) or times < 0
    ):
        raise ValueError(f"fail: times must be a non-negative integer, got {times!r}")
    return message, times


register_builtins(default_registry)
