"""LISTEN/NOTIFY wake-ups, so that an idle worker starts a new job at once.

Submissions send a notification on CHANNEL with the queue name as payload,
in the transaction that stores the job. JobWakeups listens on its own
connection; when that connection is lost it reconnects with backoff, and the
worker's polling covers the gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Iterable

import asyncpg
import structlog

from conveyor.adapters.postgres.engine import (
    SERVER_SETTINGS,
    mask_url,
    parse_url,
    plain_url,
)

CHANNEL = "conveyor_jobs"

_log = structlog.get_logger(__name__)


class JobWakeups:
    """Wakes a waiting worker when a job is submitted to one of its queues.

    `wait` only waits on an in-memory event, so a database outage cannot make
    it raise: while the listening connection is down, it times out like a
    poll interval.
    """

    def __init__(
        self,
        url: str,
        queues: Iterable[str],
        *,
        channel: str = CHANNEL,
        min_backoff: float = 0.1,
        max_backoff: float = 10.0,
        health_check_interval: float = 30.0,
    ) -> None:
        self._dsn = plain_url(parse_url(url))
        self._masked_url = mask_url(url)
        self._queues = frozenset(queues)
        self._channel = channel
        self._min_backoff = min_backoff
        self._max_backoff = max_backoff
        self._health_check_interval = health_check_interval
        self._wakeup = asyncio.Event()
        self._connected = asyncio.Event()
        self._lost = asyncio.Event()
        self._supervisor: asyncio.Task[None] | None = None
        self._connection: asyncpg.Connection | None = None

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def start(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Start listening; waits up to `timeout` seconds for the first connection.

        When PostgreSQL cannot be reached yet, start returns anyway and
        reconnection goes on in the background.
        """
        if self._supervisor is not None:
            return
        self._supervisor = asyncio.create_task(self._supervise(), name="job-wakeups")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait up to `timeout` seconds; return True when woken by a notification.

        A notification that arrived since the previous wait returns at once,
        so one sent while the worker was busy is not lost.
        """
        if not self._wakeup.is_set():
            try:
                await asyncio.wait_for(self._wakeup.wait(), timeout)
            except TimeoutError:
                return False
        self._wakeup.clear()
        return True

    async def close(self) -> None:
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
            self._supervisor = None
        await self._disconnect()

    async def _supervise(self) -> None:
        backoff = self._min_backoff
        while True:
            try:
                await self._connect()
            except Exception as exc:
                # Whatever the cause, the worker polls meanwhile, so retry.
                _log.warning(
                    "listener_connect_failed",
                    database=self._masked_url,
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=round(backoff, 2),
                )
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(self._max_backoff, backoff * 2)
                continue

            backoff = self._min_backoff
            # Notifications sent while no connection listened were lost, so
            # waiters poll once now.
            self._wakeup.set()
            try:
                await self._watch()
            except Exception as exc:
                _log.error(
                    "listener_failed",
                    database=self._masked_url,
                    error=f"{type(exc).__name__}: {exc}",
                )
            finally:
                await self._disconnect()

    async def _connect(self) -> None:
        connection = await asyncpg.connect(
            self._dsn, server_settings=SERVER_SETTINGS, timeout=10
        )
        try:
            connection.add_termination_listener(self._on_terminated)
            await connection.add_listener(self._channel, self._on_notification)
        except BaseException:
            await connection.close(timeout=1)
            raise
        self._connection = connection
        self._lost.clear()
        self._connected.set()
        _log.info(
            "listener_connected", database=self._masked_url, channel=self._channel
        )

    async def _watch(self) -> None:
        """Return once the connection is lost, checking it now and then.

        A connection cut without a TCP reset is noticed only by the check.
        """
        assert self._connection is not None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._health_check_interval)
            if self._lost.is_set():
                break
            try:
                await self._connection.execute("SELECT 1", timeout=5)
            except (
                OSError,
                TimeoutError,
                asyncpg.PostgresError,
                asyncpg.InterfaceError,
            ):
                break
        _log.warning(
            "listener_connection_lost", database=self._masked_url, channel=self._channel
        )

    async def _disconnect(self) -> None:
        self._connected.clear()
        connection, self._connection = self._connection, None
        if connection is None:
            return
        with contextlib.suppress(
            OSError, asyncpg.PostgresError, asyncpg.InterfaceError
        ):
            await connection.close(timeout=1)
        if not connection.is_closed():
            connection.terminate()

    def _on_notification(
        self, connection: object, pid: int, channel: str, payload: str
    ) -> None:
        if payload in self._queues:
            self._wakeup.set()

    def _on_terminated(self, connection: object) -> None:
        self._lost.set()
