"""A slot task survives whatever one job's handler raises."""

from __future__ import annotations

import asyncio

import pytest

from conveyor.domain.job import JsonValue
from conveyor.domain.states import JobState
from tests.unit.test_worker import Harness, harness  # noqa: F401


async def test_slot_survives_handler_cancelled_error(
    harness: Harness,  # noqa: F811
) -> None:
    async def await_cancelled_child(payload: JsonValue) -> JsonValue:
        child = asyncio.create_task(asyncio.Event().wait())
        await asyncio.sleep(0)
        child.cancel()
        await child  # raises CancelledError in the handler, not a shutdown
        return None

    harness.registry.register(await_cancelled_child, "await_cancelled_child")
    bad = await harness.submit("await_cancelled_child", max_attempts=1)
    after = await harness.submit("echo", "after")
    worker = harness.worker(concurrency=1)
    run = harness.start(worker)

    await harness.until_state(after, JobState.COMPLETED, step=0.5, max_seconds=120)
    dead = await harness.job(bad)
    assert dead.state is JobState.DEAD
    assert dead.last_error is not None
    assert dead.last_error.type == "HandlerCancelled"
    await harness.stop(worker, run)


async def test_slot_timeouts_after_failed_task_group(
    harness: Harness,  # noqa: F811
) -> None:
    async def task_group_fails(payload: JsonValue) -> JsonValue:
        async def bad() -> None:
            raise ValueError("child failed")

        async with asyncio.TaskGroup() as group:
            group.create_task(bad())
            group.create_task(asyncio.Event().wait())
        return None

    async def hangs(payload: JsonValue) -> JsonValue:
        await asyncio.Event().wait()
        return None

    harness.registry.register(task_group_fails, "task_group_fails")
    harness.registry.register(hangs, "hangs", timeout=5)
    first = await harness.submit("task_group_fails", max_attempts=1)
    second = await harness.submit("hangs", max_attempts=1)
    third = await harness.submit("echo", "after")
    worker = harness.worker(concurrency=1)
    run = harness.start(worker)

    await harness.until_state(first, JobState.DEAD, step=0.5)
    job = await harness.until_state(second, JobState.DEAD, step=0.5, max_seconds=120)
    assert job.last_error is not None
    assert job.last_error.type == "TaskTimeout"
    await harness.until_state(third, JobState.COMPLETED, step=0.5, max_seconds=120)
    await harness.stop(worker, run)


@pytest.mark.parametrize("error", [KeyboardInterrupt, GeneratorExit, SystemExit])
async def test_slot_survives_base_exception(
    harness: Harness,  # noqa: F811
    error: type[BaseException],
) -> None:
    async def raise_error(payload: JsonValue) -> JsonValue:
        raise error("from the handler")

    harness.registry.register(raise_error, "raise_error")
    bad = await harness.submit("raise_error", max_attempts=1)
    after = await harness.submit("echo", "after")
    worker = harness.worker(concurrency=1)
    run = harness.start(worker)

    await harness.until_state(after, JobState.COMPLETED, step=0.5, max_seconds=120)
    dead = await harness.job(bad)
    assert dead.state is JobState.DEAD
    assert dead.last_error is not None
    assert dead.last_error.type == error.__name__
    await harness.stop(worker, run)
