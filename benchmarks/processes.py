"""The harness side of worker processes: start, synchronise, query, stop.

See benchmarks/runner.py for the line protocol these processes speak.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent

# Seconds a worker may take to start and report ready, to reply to a command,
# and to stop after `stop` before it is signalled.
READY_SECONDS = 60.0
REPLY_SECONDS = 10.0
STOP_SECONDS = 30.0


class WorkerProcessError(RuntimeError):
    """A worker process failed to start, reply or stop."""


def peak_rss_bytes(pid: int) -> int:
    """Return the peak resident set size of a live process (VmHWM in /proc)."""
    status = Path(f"/proc/{pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise WorkerProcessError(f"/proc/{pid}/status has no VmHWM line")


def python_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for child processes: this one, with the repo importable."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    env.update(extra or {})
    return env


class WorkerProcess:
    """One benchmark worker process started with `python -m <module>`."""

    def __init__(
        self, process: asyncio.subprocess.Process, log_path: Path, label: str
    ) -> None:
        self._process = process
        self.log_path = log_path
        self.label = label

    @classmethod
    async def start(
        cls,
        module: str,
        args: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
    ) -> WorkerProcess:
        log = log_path.open("ab")
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                module,
                *args,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log,
                cwd=REPO_ROOT,
                env=python_env(env),
            )
        finally:
            log.close()
        return cls(process, log_path, module)

    @property
    def pid(self) -> int:
        return self._process.pid

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.pid)

    async def wait_ready(self) -> None:
        line = await self._read_line(READY_SECONDS, "to report ready")
        if line != "ready":
            raise self._error(f"reported {line!r} instead of ready")

    def send(self, command: str) -> None:
        stdin = self._process.stdin
        assert stdin is not None
        stdin.write(command.encode() + b"\n")

    async def stat(self) -> tuple[int, int]:
        """Return (jobs handled, latency samples recorded) so far."""
        self.send("stat")
        line = await self._read_line(REPLY_SECONDS, "to reply to stat")
        name, handled, samples = line.split()
        if name != "stat":
            raise self._error(f"sent an invalid reply to stat: {line!r}")
        return int(handled), int(samples)

    async def samples(self) -> list[tuple[int, int]]:
        self.send("samples")
        line = await self._read_line(REPLY_SECONDS, "to send its samples")
        name, _, body = line.partition(" ")
        if name != "samples":
            raise self._error(f"sent an invalid reply to samples: {line[:80]!r}")
        return [(int(a), int(b)) for a, b in json.loads(body)]

    async def stop(self) -> None:
        """Stop gracefully; signal the process only if it does not stop in time."""
        if self._process.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.send("stop")
                stdin = self._process.stdin
                assert stdin is not None
                stdin.close()
        try:
            await asyncio.wait_for(self._process.wait(), STOP_SECONDS)
        except TimeoutError:
            await self.kill()
            raise self._error(f"did not stop within {STOP_SECONDS:.0f} s") from None
        if self._process.returncode != 0:
            raise self._error(f"exited with status {self._process.returncode}")

    async def kill(self) -> None:
        """End the process by its pid: SIGTERM, then SIGKILL after 5 s."""
        if self._process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self._process.wait(), 5)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self._process.kill()
            await self._process.wait()

    async def _read_line(self, seconds: float, purpose: str) -> str:
        stdout = self._process.stdout
        assert stdout is not None
        try:
            raw = await asyncio.wait_for(stdout.readline(), seconds)
        except TimeoutError:
            raise self._error(f"took over {seconds:.0f} s {purpose}") from None
        if not raw:
            await self._process.wait()
            raise self._error(
                f"exited with status {self._process.returncode} before {purpose[3:]}"
            )
        return raw.decode().strip()

    def _error(self, message: str) -> WorkerProcessError:
        tail = _tail(self.log_path)
        return WorkerProcessError(
            f"worker {self.label} (pid {self.pid}) {message}; "
            f"log {self.log_path}:\n{tail}"
        )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _next_log_path(log_dir: Path, stem: str) -> Path:
    number = 1
    while (path := log_dir / f"{stem}-{number}.log").exists():
        number += 1
    path.touch()
    return path


async def start_workers(
    module: str,
    args: Sequence[str],
    count: int,
    log_dir: Path,
    env: dict[str, str] | None = None,
) -> list[WorkerProcess]:
    """Start `count` workers and wait until every one of them is ready."""
    workers: list[WorkerProcess] = []
    try:
        for _ in range(count):
            log_path = _next_log_path(log_dir, module.rsplit(".", 1)[-1])
            workers.append(await WorkerProcess.start(module, args, log_path, env))
        await asyncio.gather(*(worker.wait_ready() for worker in workers))
    except BaseException:
        await stop_workers(workers, force=True)
        raise
    return workers


async def stop_workers(workers: Sequence[WorkerProcess], force: bool = False) -> None:
    if force:
        await asyncio.gather(*(w.kill() for w in workers), return_exceptions=True)
        return
    results = await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
