"""Deadlines: one timer watching the timeouts of every running job."""

from __future__ import annotations

from conveyor.entrypoints.worker.timing import Deadlines, ManualTimer


async def test_deadline_calls_back_once_due() -> None:
    timer = ManualTimer()
    deadlines = Deadlines(timer)
    fired: list[str] = []
    deadlines.add(5, lambda: fired.append("a"))

    await timer.advance(4.9)
    assert fired == []
    await timer.advance(0.1)

    assert fired == ["a"]
    assert len(deadlines) == 0


async def test_removed_deadline_never_fires() -> None:
    timer = ManualTimer()
    deadlines = Deadlines(timer)
    fired: list[str] = []
    key = deadlines.add(5, lambda: fired.append("a"))
    deadlines.add(8, lambda: fired.append("b"))

    deadlines.remove(key)
    await timer.advance(10)

    assert fired == ["b"]


async def test_shorter_deadline_added_later_fires_first() -> None:
    timer = ManualTimer()
    deadlines = Deadlines(timer)
    fired: list[tuple[str, float]] = []
    deadlines.add(10, lambda: fired.append(("long", timer.monotonic())))
    await timer.advance(1)
    deadlines.add(2, lambda: fired.append(("short", timer.monotonic())))

    await timer.advance(20)

    assert fired == [("short", 3.0), ("long", 10.0)]


async def test_deadlines_due_together_all_fire() -> None:
    timer = ManualTimer()
    deadlines = Deadlines(timer)
    fired: list[int] = []
    for number in range(3):
        deadlines.add(5, lambda number=number: fired.append(number))

    await timer.advance(5)

    assert sorted(fired) == [0, 1, 2]
