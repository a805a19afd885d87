"""HTTP submit throughput against a real `conveyor api` process.

Only conveyor has an HTTP API; PgQueuer and procrastinate submit from
Python only. The API runs as `python -m conveyor.entrypoints.cli api` (the
`conveyor api` command) with its default settings and the benchmark task
module loaded, so it checks task names as in production. The load comes
from benchmarks/loadgen.py over loopback: many keep-alive connections
posting one job each to POST /jobs, and a few posting 1,000 jobs each to
POST /jobs/batch. Then conveyor's own Python HTTP client (ConveyorClient,
blocking, one connection) submits one job per call and 1,000 per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import socket
import sys
import time
from collections.abc import Callable

from benchmarks.context import Context
from benchmarks.loadgen import build_request, request_status, run_load
from benchmarks.processes import REPO_ROOT, python_env
from benchmarks.results import Sample
from benchmarks.runner import NOOP_TASK
from benchmarks.systems.base import NOOP_PAYLOAD, System

NAME = "HTTP submit"
HOST = "127.0.0.1"
START_SECONDS = 60.0


class ApiFailed(RuntimeError):
    """The API process did not start, or returned no 201 response."""


def applies_to(system: System) -> bool:
    return system.has_http_api


async def run(ctx: Context, system: System, round_no: int) -> list[Sample]:
    sizes = ctx.sizes
    single_body = json.dumps({"task": NOOP_TASK, "payload": NOOP_PAYLOAD}).encode()
    batch_body = json.dumps(
        {"jobs": [{"task": NOOP_TASK, "payload": NOOP_PAYLOAD}] * sizes.http_batch_size}
    ).encode()

    await system.reset()
    port = _free_port()
    api = await _start_api(ctx, system, port)
    try:
        await _wait_healthy(api, port)
        single = await _load(
            port, "/jobs", single_body, 1, sizes.http_single_clients, sizes.http_seconds
        )
        await system.reset()
        batched = await _load(
            port,
            "/jobs/batch",
            batch_body,
            sizes.http_batch_size,
            sizes.http_batch_clients,
            sizes.http_seconds,
        )
        await system.reset()
        client_single, client_batched = await asyncio.to_thread(
            _python_client, port, sizes.http_seconds, sizes.http_batch_size
        )
    finally:
        await _stop_api(api)

    batch_case = f"{sizes.http_batch_size:,} jobs per request"
    return [
        Sample(
            NAME,
            "one job per request",
            system.name,
            round_no,
            single[0],
            "jobs/s",
            True,
            single[1],
        ),
        Sample(
            NAME,
            batch_case,
            system.name,
            round_no,
            batched[0],
            "jobs/s",
            True,
            batched[1],
        ),
        Sample(
            NAME,
            "Python client, one job per call",
            system.name,
            round_no,
            client_single,
            "jobs/s",
            True,
        ),
        Sample(
            NAME,
            f"Python client, {sizes.http_batch_size:,} jobs per call",
            system.name,
            round_no,
            client_batched,
            "jobs/s",
            True,
        ),
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


async def _start_api(
    ctx: Context, system: System, port: int
) -> asyncio.subprocess.Process:
    log_path = ctx.log_dir / f"api-{port}.log"
    env = python_env({**system.worker_env(), "CONVEYOR_PORT": str(port)})
    with log_path.open("ab") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "conveyor.entrypoints.cli",
            "api",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=REPO_ROOT,
            env=env,
        )


async def _wait_healthy(api: asyncio.subprocess.Process, port: int) -> None:
    request = f"GET /health HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if api.returncode is not None:
            raise ApiFailed(f"the API exited with status {api.returncode} at start")
        # One request per try: a load run of a few milliseconds would end
        # before a slow first connection even sent its request.
        with contextlib.suppress(OSError, TimeoutError, ValueError):
            if await request_status(HOST, port, request) == 200:
                return
        await asyncio.sleep(0.2)
    raise ApiFailed(
        f"the API did not respond to GET /health within {START_SECONDS:.0f} s"
    )


async def _load(
    port: int,
    path: str,
    body: bytes,
    jobs_per_request: int,
    clients: int,
    seconds: float,
) -> tuple[float, dict[str, object]]:
    request = build_request(HOST, port, "POST", path, body)
    # A short untimed run opens the server's code paths and the pool first.
    await run_load(HOST, port, request, clients, seconds=0.3)
    result = await run_load(HOST, port, request, clients, seconds)

    created = result.count(201)
    other = {str(k): v for k, v in result.statuses.items() if k != 201}
    if created == 0:
        raise ApiFailed(
            f"POST {path} created no job; statuses {other}, errors {result.errors[:3]}"
        )
    latencies = sorted(result.latencies)
    detail: dict[str, object] = {
        "clients": clients,
        "requests": sum(result.statuses.values()),
        "other_statuses": other,
        "errors": len(result.errors),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 2),
    }
    return created * jobs_per_request / result.seconds, detail


def _python_client(port: int, seconds: float, batch_size: int) -> tuple[float, float]:
    from conveyor.entrypoints.client import ConveyorClient, job_body

    with ConveyorClient(f"http://{HOST}:{port}") as client:
        client.submit(NOOP_TASK, NOOP_PAYLOAD)
        single = _repeat(lambda: client.submit(NOOP_TASK, NOOP_PAYLOAD), seconds)
        jobs = [job_body(NOOP_TASK, NOOP_PAYLOAD) for _ in range(batch_size)]
        calls = _repeat(lambda: client.submit_many(jobs), seconds)
    return single, calls * batch_size


def _repeat(call: Callable[[], object], seconds: float) -> float:
    """Call `call` until `seconds` have passed; return calls per second."""
    count = 0
    started = time.perf_counter()
    deadline = started + seconds
    while time.perf_counter() < deadline:
        call()
        count += 1
    return count / (time.perf_counter() - started)


async def _stop_api(api: asyncio.subprocess.Process) -> None:
    if api.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        api.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(api.wait(), 15)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            api.kill()
        await api.wait()
