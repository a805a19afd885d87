"""End to end: real `conveyor api` and `conveyor worker` processes on PostgreSQL.

Every test talks to the API over HTTP and waits on conditions by polling it
with a deadline. Leases, heartbeats and retry backoff are set short so that
crashes and retries play out in seconds. Each test uses its own queue, so
workers of one test never take jobs of another.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

pytestmark = pytest.mark.slow

CONVEYOR = Path(sys.executable).with_name("conveyor")
T = TypeVar("T")

# Settings for every process: short leases so that a killed worker's job is
# recovered within a few seconds, and short backoff so retries come quickly.
FAST_SETTINGS = {
    "CONVEYOR_LEASE_SECONDS": "2",
    "CONVEYOR_HEARTBEAT_SECONDS": "0.5",
    "CONVEYOR_POLL_SECONDS": "0.5",
    "CONVEYOR_RETRY_BASE_SECONDS": "0.3",
    "CONVEYOR_RETRY_MAX_SECONDS": "2",
    "CONVEYOR_SHUTDOWN_GRACE_SECONDS": "20",
    "CONVEYOR_LOG_FORMAT": "json",
    "CONVEYOR_LOG_LEVEL": "INFO",
}
# The smallest backoff that RetryPolicy's 20 % jitter allows after attempt 1
# and 2, with CONVEYOR_RETRY_BASE_SECONDS=0.3 and the default factor 2.
MIN_FIRST_BACKOFF = 0.24
MIN_SECOND_BACKOFF = 0.48


def wait_until(probe: Callable[[], T | None], timeout: float, description: str) -> T:
    """Call `probe` until it returns something other than None or False."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout} s waiting for {description}"
            )
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Process:
    """A conveyor process whose stdout and stderr go to one log file."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], folder: Path):
        self.name = name
        self.log_path = folder / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                [str(CONVEYOR), *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """Return the JSON log lines written so far, optionally only event `name`."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or entry.get("event") == name:
                found.append(entry)
        return found

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(
            self.log_path.read_text(errors="replace").splitlines()[-lines:]
        )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if the process is still there after 15 s."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=5)


class Processes:
    """Processes started by one fixture; stop_all() ends each by its PID."""

    def __init__(self, env: dict[str, str], folder: Path) -> None:
        self.env = env
        self.folder = folder
        self.started: list[Process] = []

    def start(self, name: str, *args: str) -> Process:
        process = Process(name, list(args), self.env, self.folder)
        self.started.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.started:
            process.stop()


def conveyor_env(database_url: str, port: int, folder: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update(FAST_SETTINGS)
    env["CONVEYOR_DATABASE_URL"] = database_url
    env["CONVEYOR_PORT"] = str(port)
    env["CONVEYOR_DATA_DIR"] = str(folder / "data")
    return env


@pytest.fixture(scope="module")
def api_url(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("e2e-api")
    port = free_port()
    processes = Processes(conveyor_env(database_url, port, folder), folder)
    api = processes.start("api", "api")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _responds(url, api), 30, "the API to answer /health")
        yield url
    finally:
        processes.stop_all()


def _responds(url: str, api: Process) -> bool:
    if api.popen.poll() is not None:
        raise AssertionError(f"the API exited early:\n{api.log_tail()}")
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def client(api_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api_url, timeout=10) as client:
        yield client


@pytest.fixture
def workers(database_url: str, api_url: str, tmp_path: Path) -> Iterator[Processes]:
    port = int(api_url.rsplit(":", 1)[1])
    processes = Processes(conveyor_env(database_url, port, tmp_path), tmp_path)
    yield processes
    processes.stop_all()


@pytest.fixture
def queue() -> str:
    return f"e2e_{secrets.token_hex(4)}"


def start_worker(
    workers: Processes, queue: str, name: str, *options: str
) -> tuple[Process, str]:
    """Start `conveyor worker` on `queue`; return it and its worker id once running."""
    worker = workers.start(name, "worker", "--queues", queue, *options)

    def started() -> str | None:
        if worker.popen.poll() is not None:
            raise AssertionError(f"{name} exited early:\n{worker.log_tail()}")
        entries = worker.events("worker_started")
        return str(entries[0]["worker_id"]) if entries else None

    return worker, wait_until(started, 30, f"{name} to log worker_started")


def submit(client: httpx.Client, **body: Any) -> dict[str, Any]:
    response = client.post("/jobs", json=body)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_for_state(
    client: httpx.Client, job_id: int, state: str, timeout: float
) -> dict[str, Any]:
    last: dict[str, Any] = {}

    def reached() -> dict[str, Any] | None:
        nonlocal last
        last = client.get(f"/jobs/{job_id}").json()
        return last if last["state"] == state else None

    try:
        return wait_until(reached, timeout, f"job {job_id} to be {state}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {last}") from None


def gap_seconds(earlier: str, later: str) -> float:
    return (
        datetime.fromisoformat(later) - datetime.fromisoformat(earlier)
    ).total_seconds()


def test_echo_job_completes(
    client: httpx.Client, workers: Processes, queue: str
) -> None:
    worker, worker_id = start_worker(workers, queue, "worker")

    job = submit(client, task="echo", payload={"text": "hi", "n": [1, 2]}, queue=queue)
    done = wait_for_state(client, job["job_id"], "COMPLETED", timeout=10)

    assert job["state"] == "PENDING"
    assert done["result"] == {"text": "hi", "n": [1, 2]}
    assert done["attempt"] == 1
    assert len(done["attempts"]) == 1
    assert done["attempts"][0]["outcome"] == "COMPLETED"
    assert done["attempts"][0]["worker_id"] == worker_id
    completed = [
        e for e in worker.events("jobs_completed") if job["job_id"] in e["job_ids"]
    ]
    assert len(completed) == 1
    assert completed[0]["level"] == "info"
    assert completed[0]["worker_id"] == worker_id


def test_failing_job_retries_then_dies(
    client: httpx.Client, workers: Processes, queue: str
) -> None:
    worker, worker_id = start_worker(workers, queue, "worker")

    job = submit(
        client, task="fail", payload={"message": "boom"}, queue=queue, max_attempts=3
    )
    dead = wait_for_state(client, job["job_id"], "DEAD", timeout=20)

    attempts = dead["attempts"]
    assert dead["attempt"] == 3
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["outcome"] for a in attempts] == ["FAILED", "FAILED", "FAILED"]
    for number, attempt in enumerate(attempts, start=1):
        assert attempt["worker_id"] == worker_id
        assert attempt["error"]["type"] == "RequestedFailure"
        assert attempt["error"]["message"] == f"boom (attempt {number})"
        assert "RequestedFailure" in attempt["error"]["traceback"]
    first_gap = gap_seconds(attempts[0]["finished_at"], attempts[1]["started_at"])
    second_gap = gap_seconds(attempts[1]["finished_at"], attempts[2]["started_at"])
    assert first_gap >= MIN_FIRST_BACKOFF
    assert second_gap >= MIN_SECOND_BACKOFF
    assert dead["last_error"]["message"] == "boom (attempt 3)"
    job_id = job["job_id"]
    failed_lines = [e for e in worker.events("job_failed") if e["job_id"] == job_id]
    dead_lines = [e for e in worker.events("job_dead") if e["job_id"] == job_id]
    assert [e["attempt"] for e in failed_lines] == [1, 2]
    assert all(e["level"] == "warning" for e in failed_lines)
    assert [e["attempt"] for e in dead_lines] == [3]
    assert dead_lines[0]["level"] == "error"
    assert dead_lines[0]["error_type"] == "RequestedFailure"


def test_killed_worker_job_finishes_elsewhere(
    client: httpx.Client, workers: Processes, queue: str
) -> None:
    doomed, doomed_id = start_worker(workers, queue, "doomed")
    job = submit(client, task="sleep", payload={"seconds": 2}, queue=queue)
    running = wait_for_state(client, job["job_id"], "IN_PROGRESS", timeout=10)

    os.kill(doomed.pid, signal.SIGKILL)
    doomed.popen.wait(timeout=10)
    rescuer, rescuer_id = start_worker(workers, queue, "rescuer")
    done = wait_for_state(client, job["job_id"], "COMPLETED", timeout=30)

    assert running["worker_id"] == doomed_id
    assert done["result"] == {"slept": 2.0}
    assert done["attempt"] == 2
    assert [a["outcome"] for a in done["attempts"]] == ["LEASE_EXPIRED", "COMPLETED"]
    assert done["attempts"][0]["worker_id"] == doomed_id
    assert done["attempts"][0]["error"]["type"] == "LeaseExpired"
    assert done["attempts"][1]["worker_id"] == rescuer_id
    expired = [
        e for e in rescuer.events("lease_expired") if e["job_id"] == job["job_id"]
    ]
    assert len(expired) == 1
    assert expired[0]["worker_id"] == doomed_id
    assert expired[0]["recovered_by"] == rescuer_id


def test_sigterm_lets_running_job_finish(
    client: httpx.Client, workers: Processes, queue: str
) -> None:
    workers.env["CONVEYOR_PREFETCH"] = "1"
    worker, worker_id = start_worker(workers, queue, "worker", "--concurrency", "1")
    running = submit(client, task="sleep", payload={"seconds": 1.5}, queue=queue)
    wait_for_state(client, running["job_id"], "IN_PROGRESS", timeout=10)
    waiting = submit(client, task="echo", payload="later", queue=queue)
    wait_until(
        lambda: (
            client.get(f"/jobs/{waiting['job_id']}").json()["state"] == "IN_PROGRESS"
        ),
        10,
        "the second job to be prefetched",
    )

    worker.popen.send_signal(signal.SIGTERM)
    exit_code = worker.popen.wait(timeout=20)
    finished = client.get(f"/jobs/{running['job_id']}").json()
    released = client.get(f"/jobs/{waiting['job_id']}").json()

    assert exit_code == 0
    assert finished["state"] == "COMPLETED"
    assert finished["attempts"][0]["worker_id"] == worker_id
    assert released["state"] == "PENDING"
    assert released["attempt"] == 0
    assert [a["outcome"] for a in released["attempts"]] == ["RELEASED"]
    events = [e["event"] for e in worker.events()]
    assert events.index("worker_stopping") < events.index("jobs_completed")
    assert events[-1] == "worker_stopped"


def test_repeated_key_returns_first_job(client: httpx.Client, queue: str) -> None:
    body = {"task": "echo", "payload": {"n": 1}, "queue": queue}
    headers = {"Idempotency-Key": f"key-{queue}"}

    first = client.post("/jobs", json=body, headers=headers)
    repeat = client.post("/jobs", json=body, headers=headers)
    conflict = client.post("/jobs", json={**body, "payload": {"n": 2}}, headers=headers)

    assert first.status_code == 201
    assert repeat.status_code == 200
    assert repeat.json()["job_id"] == first.json()["job_id"]
    assert conflict.status_code == 409
    assert f"key-{queue}" in conflict.text
