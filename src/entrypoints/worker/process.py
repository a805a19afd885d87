"""Run a worker as a process: build it from the container, stop it on signals."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
from collections.abc import Coroutine
from typing import Any

import structlog

from conveyor.application.executing import ExecuteJobs
from conveyor.domain.job import WorkerId
from conveyor.entrypoints.builtin_tasks import register_builtins
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.container import resolve, resolve_as
from conveyor.entrypoints.tasks import TaskRegistry
from conveyor.entrypoints.worker.worker import Worker

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_event_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run `main` to the end on uvloop when it is installed, else on asyncio's loop.

    uvloop spends less CPU per callback and per socket read, and a worker
    runs several of each per job.
    """
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)


def new_worker_id() -> WorkerId:
    """Return an id unique to this process: hostname-pid-random."""
    host = socket.gethostname().split(".")[0] or "host"
    return WorkerId(f"{host}-{os.getpid()}-{secrets.token_hex(3)}")


def recovery_interval(lease_seconds: float) -> float:
    """Seconds between recovery sweeps: 5, or half the lease when that is shorter.

    A crashed worker's jobs then run again at most lease + interval seconds
    after its last heartbeat.
    """
    return min(5.0, lease_seconds / 2)


async def run_worker(settings: Settings, container: Any) -> None:
    """Run a worker until SIGTERM or SIGINT; a second signal skips the grace period.

    The caller owns the container's resources (the engine) and closes them.
    """
    registry = await resolve_as(container.registry, TaskRegistry)
    register_builtins(registry)
    registry.load_modules(settings.task_modules)
    execute = await resolve_as(container.execute_jobs, ExecuteJobs)
    wakeups = await resolve(container.wakeups)

    worker = Worker(
        execute=execute,
        registry=registry,
        worker_id=new_worker_id(),
        queues=settings.queues,
        concurrency=settings.concurrency,
        claim_batch=settings.claim_batch,
        prefetch=settings.prefetch,
        poll_seconds=settings.poll_seconds,
        heartbeat_seconds=settings.heartbeat_seconds,
        shutdown_grace_seconds=settings.shutdown_grace_seconds,
        task_timeout_seconds=settings.task_timeout_seconds,
        wakeups=wakeups,
        recovery_seconds=recovery_interval(settings.lease_seconds),
        logger=structlog.get_logger("conveyor.worker"),
    )

    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, worker.request_stop)
    try:
        if wakeups is not None:
            # Returns even while PostgreSQL is unreachable; it keeps reconnecting.
            await wakeups.start()
        await worker.run()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
        if wakeups is not None:
            with contextlib.suppress(Exception):
                await wakeups.close()
