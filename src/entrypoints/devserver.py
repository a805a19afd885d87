"""`conveyor dev`: PostgreSQL, migrations, the API and a worker in one command.

The API and the worker run as child processes (`conveyor api`, `conveyor
worker`) with the database URL in their environment. Each runs in its own
session, so a Ctrl-C reaches only this supervisor. The supervisor then stops
them with SIGTERM, waits for a grace period, and sends SIGKILL to any left.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import FrameType

import click
import httpx

from conveyor.adapters.postgres.migrate import upgrade_sync
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.embedded import EmbeddedPostgres, display_url, start_embedded
from conveyor.entrypoints.logging import get_logger

log = get_logger("conveyor.dev")

# Extra seconds a child gets beyond the worker's drain grace before SIGKILL.
KILL_MARGIN_SECONDS = 10.0
# How long after its start the API may take to return 200 from /health.
API_START_TIMEOUT_SECONDS = 30.0
_PR_SET_PDEATHSIG = 1


def run_dev(settings: Settings) -> int:
    """Run everything until a stop signal or a child's exit; return the exit code."""
    embedded: EmbeddedPostgres | None = None
    url = settings.database_url
    if not url:
        embedded = start_embedded(settings.data_dir)
        url = embedded.url
        _say(f"PostgreSQL data folder: {embedded.pgdata}")
    try:
        _say(f"database: {display_url(url)}")
        upgrade_sync(url)
        _say("migrations applied")
        return _supervise(settings, _child_env(settings, url))
    finally:
        if embedded is not None:
            embedded.stop()
            _say(f"PostgreSQL stopped (data kept in {embedded.pgdata})")


def _supervise(settings: Settings, env: Mapping[str, str]) -> int:
    stop = _StopSignals()
    children: dict[str, subprocess.Popen[bytes]] = {}
    try:
        with stop.installed():
            children["api"] = _spawn("api", env)
            children["worker"] = _spawn("worker", env)
            api_url = f"http://{settings.host}:{settings.port}"
            if _wait_for_api(api_url, children["api"], stop):
                _say(
                    f"API on {api_url} (pid {children['api'].pid}), worker pid "
                    f"{children['worker'].pid}; press Ctrl-C to stop"
                )
            exit_code = _watch(children, stop)
            _stop_children(children, stop, settings.shutdown_grace_seconds)
            return exit_code
    finally:
        # Reached with children still alive only if this process itself failed.
        for child in children.values():
            if child.poll() is None:
                child.kill()
                child.wait()


def _child_env(settings: Settings, url: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CONVEYOR_DATABASE_URL=url,
        CONVEYOR_STORE="postgres",
        CONVEYOR_HOST=settings.host,
        CONVEYOR_PORT=str(settings.port),
        CONVEYOR_CONCURRENCY=str(settings.concurrency),
        CONVEYOR_TASK_MODULES=",".join(settings.task_modules),
        PYTHONUNBUFFERED="1",
    )
    return env


def _spawn(command: str, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "conveyor.entrypoints.cli", command],
        env=env,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    log.info("child_started", command=command, pid=process.pid)
    return process


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM the child if this supervisor dies without stopping it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _wait_for_api(
    api_url: str, api: subprocess.Popen[bytes], stop: _StopSignals
) -> bool:
    deadline = time.monotonic() + API_START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and api.poll() is None and not stop.count:
        try:
            if httpx.get(f"{api_url}/health", timeout=1.0).status_code == 200:
                return True
        except httpx.TransportError:
            pass
        stop.wait(0.1)
    return False


def _watch(children: Mapping[str, subprocess.Popen[bytes]], stop: _StopSignals) -> int:
    """Wait for a stop signal (exit code 0) or for a child to exit (exit code 1)."""
    while not stop.wait(0.2):
        for name, child in children.items():
            code = child.poll()
            if code is not None:
                log.error("child_exited", command=name, pid=child.pid, exit_code=code)
                _say(f"`conveyor {name}` exited with code {code}; stopping the rest")
                return 1
    _say("stopping")
    return 0


def _stop_children(
    children: Mapping[str, subprocess.Popen[bytes]],
    stop: _StopSignals,
    grace_seconds: float,
) -> None:
    """SIGTERM each child, wait, and SIGKILL what is still running after the grace.

    A further Ctrl-C sends SIGTERM again, which makes a draining worker give
    up its grace period and release its jobs at once.
    """
    running = {name: c for name, c in children.items() if c.poll() is None}
    for child in running.values():
        child.send_signal(signal.SIGTERM)

    deadline = time.monotonic() + grace_seconds + KILL_MARGIN_SECONDS
    signals_seen = stop.count
    while running and time.monotonic() < deadline:
        if stop.count > signals_seen:
            signals_seen = stop.count
            for child in running.values():
                child.send_signal(signal.SIGTERM)
        running = {name: c for name, c in running.items() if c.poll() is None}
        time.sleep(0.1)

    for name, child in running.items():
        log.warning("child_killed", command=name, pid=child.pid)
        child.kill()
        child.wait()
    for name, child in children.items():
        log.info("child_stopped", command=name, pid=child.pid, exit_code=child.wait())


class _StopSignals:
    """Counts SIGINT and SIGTERM received while installed."""

    def __init__(self) -> None:
        self.count = 0
        self._event = threading.Event()

    def installed(self) -> _Installed:
        return _Installed(self._on_signal)

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`; True once any stop signal has arrived."""
        return self._event.wait(seconds)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        self._event.set()


class _Installed:
    def __init__(self, handler: Callable[[int, FrameType | None], None]) -> None:
        self._handler = handler
        self._previous: dict[int, object] = {}

    def __enter__(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self._handler)

    def __exit__(self, *exc_info: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)  # type: ignore[arg-type]


def _say(message: str) -> None:
    click.echo(f"conveyor dev: {message}", err=True)
