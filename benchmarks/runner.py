"""The worker side of a benchmark: one worker process driven over stdin/stdout.

Each system module starts its worker through `serve`. The process prepares
(imports, connections), prints `ready`, and waits for `go` so that every
worker of a measurement starts at the same moment, after its start-up cost.
Then it replies to commands, one line each:

    stat      ->  stat <jobs handled> <latency samples>
    samples   ->  samples <JSON list of [submitted_ns, started_ns]>
    stop/EOF  ->  stops the worker gracefully, prints `stopped`, exits

Replies go to a private copy of the original stdout; fd 1 is pointed at
stderr so that nothing a library prints can corrupt the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol, TextIO

NOOP_TASK = "bench_noop"
PROBE_TASK = "bench_probe"


@dataclass
class Probe:
    """What the no-op handlers of this process record."""

    handled: int = 0
    samples: list[tuple[int, int]] = field(default_factory=list)

    def noop(self) -> None:
        self.handled += 1

    def probe(self, submitted_ns: int) -> None:
        # Read the clock first: this is the handler start the latency ends at.
        # time.monotonic_ns reads CLOCK_MONOTONIC, shared by all processes here.
        started_ns = time.monotonic_ns()
        self.samples.append((int(submitted_ns), started_ns))
        self.handled += 1


PROBE = Probe()


class BenchWorker(Protocol):
    async def prepare(self) -> None:
        """Import, connect and build the worker; nothing may be claimed yet."""
        ...

    async def run(self) -> None:
        """Run the worker until `stop` is called."""
        ...

    async def stop(self) -> None:
        """Ask the worker to finish its running jobs and return from `run`."""
        ...


def parse_args(argv: list[str] | None = None) -> tuple[str, dict[str, Any]]:
    parser = argparse.ArgumentParser(description="benchmark worker process")
    parser.add_argument("--dsn", required=True, help="database URL of the system")
    parser.add_argument(
        "--params", default="{}", help="JSON object of settings for this worker"
    )
    args = parser.parse_args(argv)
    params: dict[str, Any] = json.loads(args.params)
    return args.dsn, params


def serve(
    make_worker: Callable[[], BenchWorker],
    *,
    use_uvloop: bool,
) -> None:
    """Run one benchmark worker process to the end of the protocol."""
    protocol = _take_stdout()
    worker = make_worker()
    runner: Callable[[Coroutine[Any, Any, None]], None]
    if use_uvloop:
        import uvloop

        runner = uvloop.run
    else:
        runner = asyncio.run
    try:
        runner(_serve(worker, protocol))
    except BaseException:
        traceback.print_exc()
        _send(protocol, "error see stderr")
        raise SystemExit(1) from None


def _take_stdout() -> TextIO:
    private = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return private


def _send(protocol: TextIO, line: str) -> None:
    protocol.write(line + "\n")
    protocol.flush()


class _Commands:
    """Lines from stdin, read by a thread and handed to the event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = loop
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in sys.stdin:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, line.strip())
        self._loop.call_soon_threadsafe(self._queue.put_nowait, None)

    async def next(self) -> str | None:
        return await self._queue.get()


async def _serve(worker: BenchWorker, protocol: TextIO) -> None:
    commands = _Commands(asyncio.get_running_loop())
    await worker.prepare()
    _send(protocol, "ready")

    command = await commands.next()
    if command != "go":
        return
    run_task = asyncio.create_task(worker.run())

    while True:
        command_task = asyncio.create_task(commands.next())
        done, _ = await asyncio.wait(
            {run_task, command_task}, return_when=asyncio.FIRST_COMPLETED
        )
        if run_task in done:
            command_task.cancel()
            # A worker that returns before `stop` has crashed or given up.
            run_task.result()
            raise RuntimeError("the worker returned before it was asked to stop")

        command = command_task.result()
        if command == "stat":
            _send(protocol, f"stat {PROBE.handled} {len(PROBE.samples)}")
        elif command == "samples":
            _send(protocol, "samples " + json.dumps(PROBE.samples))
        elif command in ("stop", None):
            break

    await worker.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(run_task, timeout=30)
    _send(protocol, "stopped")
