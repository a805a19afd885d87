"""Profile conveyor's side of a benchmark with py-spy and print where time goes.

    python -m benchmarks.profile worker [--jobs N]   # one worker draining N jobs
    python -m benchmarks.profile enqueue             # SubmitJobs in this process
    python -m benchmarks.profile api [--seconds S]   # `conveyor api` under load
    python -m benchmarks.profile api --batch         # ... on POST /jobs/batch

py-spy samples the process 250 times a second (with --idle off, so a
process waiting on the network shows no samples). The report lists the
frames with the most samples: "self" counts samples where the frame was
running, "total" samples where it was anywhere on the stack. The raw
folded stacks are written next to the report for flame graphs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.context import Context
from benchmarks.database import BenchDatabases
from benchmarks.loadgen import build_request, run_load
from benchmarks.measurements import http
from benchmarks.measurements.throughput import _wait_handled
from benchmarks.processes import start_workers, stop_workers
from benchmarks.runner import NOOP_TASK
from benchmarks.settings import QUICK
from benchmarks.systems.base import NOOP_PAYLOAD
from benchmarks.systems.conveyor import Conveyor

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RATE = 250


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit(
            "py-spy is missing; install the extra: pip install -e '.[bench]'"
        )
    return found


def start_py_spy(pid: int, seconds: float, output: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            _py_spy(),
            "record",
            "--pid",
            str(pid),
            "--rate",
            str(RATE),
            "--duration",
            str(max(1, round(seconds))),
            "--format",
            "raw",
            "--output",
            str(output),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarize(folded: Path, top: int = 40) -> str:
    """Self and total samples per frame from py-spy's folded (raw) output."""
    own: collections.Counter[str] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in folded.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count

    def table(counter: collections.Counter[str]) -> list[str]:
        return [
            f"{count:7d} {100 * count / samples:5.1f}%  {frame}"
            for frame, count in counter.most_common(top)
        ]

    return "\n".join(
        [
            f"{samples} samples at {RATE} Hz",
            "",
            "self:",
            *table(own),
            "",
            "total:",
            *table(total),
        ]
    )


async def profile_worker(url: str, jobs: int, out_dir: Path) -> Path:
    databases = BenchDatabases(url)
    try:
        system = Conveyor(await databases.create("conveyor_profile"))
        await system.install()
        await system.fill(jobs)
        await system.analyze()
        [worker] = await start_workers(
            system.worker_module, system.worker_args(), 1, out_dir, system.worker_env()
        )
        folded = out_dir / "worker.txt"
        spy = start_py_spy(worker.pid, 120, folded)
        await asyncio.sleep(1.0)
        started = time.perf_counter()
        worker.send("go")
        await _wait_handled([worker], jobs)
        elapsed = time.perf_counter() - started
        spy.send_signal(2)
        spy.wait()
        await stop_workers([worker])
        print(f"drained {jobs} jobs in {elapsed:.2f} s ({jobs / elapsed:,.0f} jobs/s)")
        return folded
    finally:
        await databases.drop_all()


async def profile_enqueue(url: str, out_dir: Path) -> Path:
    from pyinstrument import Profiler

    databases = BenchDatabases(url)
    try:
        system = Conveyor(await databases.create("conveyor_profile"))
        await system.install()
        producer = await system.open_producer()
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        try:
            with profiler:
                for _ in range(2_000):
                    await producer.submit_noop()
                for _ in range(20):
                    await producer.submit_noop_batch(1_000)
        finally:
            await producer.close()
        report = out_dir / "enqueue.txt"
        report.write_text(
            profiler.output_text(unicode=False, color=False, show_all=False)
        )
        return report
    finally:
        await databases.drop_all()


async def profile_api(url: str, seconds: float, batch: bool, out_dir: Path) -> Path:
    databases = BenchDatabases(url)
    ctx = Context(QUICK, out_dir, databases)
    try:
        system = Conveyor(await databases.create("conveyor_profile"))
        await system.install()
        port = http._free_port()
        api = await http._start_api(ctx, system, port)
        try:
            await http._wait_healthy(api, port)
            item = {"task": NOOP_TASK, "payload": NOOP_PAYLOAD}
            if batch:
                path, jobs, clients = "/jobs/batch", 1_000, 4
                body = json.dumps({"jobs": [item] * jobs}).encode()
            else:
                path, jobs, clients = "/jobs", 1, 32
                body = json.dumps(item).encode()
            request = build_request(http.HOST, port, "POST", path, body)
            folded = out_dir / "api.txt"
            spy = start_py_spy(api.pid, seconds, folded)
            await asyncio.sleep(0.5)
            result = await run_load(http.HOST, port, request, clients, seconds)
            rate = result.count(201) * jobs / result.seconds
            print(f"POST {path}: {rate:,.0f} jobs/s")
            spy.wait()
        finally:
            await http._stop_api(api)
        return folded
    finally:
        await databases.drop_all()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    parser.add_argument("target", choices=["worker", "enqueue", "api"])
    parser.add_argument("--jobs", type=int, default=30_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument(
        "--batch", action="store_true", help="api: load POST /jobs/batch"
    )
    parser.add_argument(
        "--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL)
    )
    parser.add_argument("--out", type=Path, help="folder for the profiles")
    args = parser.parse_args()
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="conveyor-profile-"))
    out_dir.mkdir(parents=True, exist_ok=True)

    if args.target == "worker":
        folded = asyncio.run(profile_worker(args.database_url, args.jobs, out_dir))
    elif args.target == "api":
        folded = asyncio.run(
            profile_api(args.database_url, args.seconds, args.batch, out_dir)
        )
    else:
        report = asyncio.run(profile_enqueue(args.database_url, out_dir))
        print(report.read_text())
        return
    summary = summarize(folded)
    (out_dir / f"{folded.stem}-summary.txt").write_text(summary)
    print(summary)
    print(f"\nfolded stacks: {folded}")


if __name__ == "__main__":
    main()
