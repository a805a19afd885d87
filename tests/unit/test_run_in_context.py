"""run_in_context: a coroutine awaited in its own context, as a task would run it."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from conveyor.entrypoints.worker.run import run_in_context

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def test_returns_value_after_waiting_for_future() -> None:
    future: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def wait_for_future() -> str:
        return await future

    waiting = asyncio.ensure_future(
        run_in_context(wait_for_future(), contextvars.copy_context())
    )
    await asyncio.sleep(0)
    future.set_result("done")

    assert await waiting == "done"


async def test_context_changes_stay_inside() -> None:
    context = contextvars.copy_context()
    context.run(marker.set, "given")
    seen: list[str] = []

    async def change_marker() -> None:
        seen.append(marker.get())
        marker.set("changed")
        await asyncio.sleep(0)
        seen.append(marker.get())

    await run_in_context(change_marker(), context)

    assert seen == ["given", "changed"]
    assert marker.get() == "unset"
    assert context[marker] == "changed"


async def test_error_of_coroutine_propagates() -> None:
    async def fail_after_wait() -> None:
        await asyncio.sleep(0)
        raise ValueError("broken")

    with pytest.raises(ValueError, match="broken"):
        await run_in_context(fail_after_wait(), contextvars.copy_context())


async def test_cancelling_outer_task_reaches_coroutine() -> None:
    cleaned_up = asyncio.Event()

    async def wait_forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    waiting = asyncio.ensure_future(
        run_in_context(wait_forever(), contextvars.copy_context())
    )
    await asyncio.sleep(0)
    waiting.cancel()

    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert cleaned_up.is_set()


async def test_timeout_acts_on_awaiting_task() -> None:
    async def time_out() -> str:
        try:
            async with asyncio.timeout(0.01):
                await asyncio.Event().wait()
        except TimeoutError:
            return "timed out"
        return "not timed out"

    async def outer() -> tuple[str, int]:
        result = await run_in_context(time_out(), contextvars.copy_context())
        task = asyncio.current_task()
        assert task is not None
        return result, task.cancelling()

    result, cancelling = await outer()

    assert result == "timed out"
    assert cancelling == 0


async def test_coroutine_without_waits_returns() -> None:
    async def add(a: int, b: int) -> int:
        return a + b

    assert await run_in_context(add(2, 3), contextvars.copy_context()) == 5
