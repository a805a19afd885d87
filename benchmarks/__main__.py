"""python -m benchmarks: measure conveyor beside PgQueuer, procrastinate and raw SQL.

Each system gets its own database on the server given by --database-url
(created as bench_<system>_<hex>, dropped at the end). Rounds run every
selected measurement for every system, and the system order rotates by one
each round. The report gives the median, min and max over rounds, and the
median of the ratios taken within each round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

from benchmarks import report
from benchmarks.context import Context
from benchmarks.database import (
    DEFAULT_SERVER_URL,
    BenchDatabases,
    masked,
    server_facts,
)
from benchmarks.machine import machine_facts, package_versions, source_revision
from benchmarks.measurements import claim, enqueue, http, latency, rss, throughput
from benchmarks.results import Failure, Results
from benchmarks.settings import parse_params, sizes_for
from benchmarks.systems import SYSTEMS, SystemUnavailable, load
from benchmarks.systems.base import System

# Measurement name on the command line -> module, in run order.
MEASUREMENTS: dict[str, ModuleType] = {
    "throughput": throughput,
    "enqueue": enqueue,
    "http": http,
    "latency": latency,
    "claim": claim,
    "rss": rss,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER_URL),
        help=(
            "URL of a PostgreSQL server on this machine, on a database to connect "
            "to for CREATE DATABASE [BENCH_DATABASE_URL, %(default)s]"
        ),
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds per measurement (default 3)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small counts; the whole run takes under 5 minutes",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="SYSTEM/MEASUREMENT",
        help=(
            "run only these; a system, a measurement, or SYSTEM/MEASUREMENT, "
            "repeated or comma-separated. Systems: "
            + ", ".join(SYSTEMS)
            + "; measurements: "
            + ", ".join(MEASUREMENTS)
        ),
    )
    parser.add_argument(
        "--jobs",
        type=int,
        help="pending jobs per worker throughput drain (default 100,000; quick 10,000)",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="SYSTEM.NAME=VALUE",
        help="change a worker setting, e.g. pgqueuer.batch_size=100",
    )
    parser.add_argument(
        "--output",
        action="append",
        default=[],
        metavar="FILE",
        help="write results to FILE: .json for all samples, .md for the report",
    )
    parser.add_argument(
        "--log-dir",
        type=Path,
        help="folder for worker and API logs (default: a new temporary folder)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    for output in args.output:
        if Path(output).suffix not in (".json", ".md"):
            parser.error(f"--output {output!r} must end in .json or .md")
    return args


def parse_selection(items: list[str]) -> set[tuple[str, str]]:
    """Return the (system, measurement) pairs to run."""
    everything = {(s, m) for s in SYSTEMS for m in MEASUREMENTS}
    names = [part.strip() for item in items for part in item.split(",") if part.strip()]
    chosen: set[tuple[str, str]] = set() if names else everything
    for name in names:
        system, slash, measurement = name.partition("/")
        if not slash:
            if name in SYSTEMS:
                system, measurement = name, "*"
            elif name in MEASUREMENTS:
                system, measurement = "*", name
            else:
                raise ValueError(
                    f"--only {name!r} names no system ({', '.join(SYSTEMS)}) "
                    f"and no measurement ({', '.join(MEASUREMENTS)})"
                )
        if system != "*" and system not in SYSTEMS:
            raise ValueError(f"--only {name!r}: unknown system {system!r}")
        if measurement != "*" and measurement not in MEASUREMENTS:
            raise ValueError(f"--only {name!r}: unknown measurement {measurement!r}")
        chosen |= {
            (s, m)
            for s, m in everything
            if system in ("*", s) and measurement in ("*", m)
        }
    # Throughput records the worker RSS too; a separate drain would repeat it.
    return {(s, m) for s, m in chosen if m != "rss" or (s, "throughput") not in chosen}


def _conveyor_source() -> str:
    import conveyor

    source = Path(conveyor.__file__).resolve().parent
    return f"{source} at {source_revision(source)}"


def rotated(names: list[str], round_no: int) -> list[str]:
    shift = (round_no - 1) % len(names)
    return names[shift:] + names[:shift]


def progress(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S} {message}", file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> Results:
    selection = parse_selection(args.only)
    sizes = sizes_for(args.quick, args.jobs)
    params = parse_params(args.param)
    log_dir = args.log_dir or Path(tempfile.mkdtemp(prefix="conveyor-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    databases = BenchDatabases(args.database_url)
    context = Context(sizes, log_dir, databases, params)
    started = time.perf_counter()

    results = Results()
    results.info = {
        "date": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "command": "python -m benchmarks " + shlex.join(sys.argv[1:]),
        "mode": "quick" if args.quick else "full",
        "conveyor source": _conveyor_source(),
        "rounds": args.rounds,
        "database server": masked(args.database_url),
        "logs": str(log_dir),
        "machine": machine_facts(),
        "packages": package_versions(),
        "sizes": {key: str(value) for key, value in asdict(sizes).items()},
    }
    server = await server_facts(args.database_url)
    results.info["postgresql"] = server["version"]
    results.info["postgresql settings not at their defaults"] = server["settings"]

    system_names = [name for name in SYSTEMS if any(s == name for s, _ in selection)]
    systems: dict[str, System] = {}
    try:
        for name in system_names:
            system_class = load(name)
            system = system_class(await databases.create(name), params.get(name))
            progress(f"installing {name}")
            await system.install()
            systems[name] = system
        results.info["worker settings"] = {
            name: system.describe() for name, system in systems.items()
        }

        for round_no in range(1, args.rounds + 1):
            order = rotated(system_names, round_no)
            for measurement_name, module in MEASUREMENTS.items():
                if getattr(module, "RUNS_ONCE", False):
                    continue
                for name in order:
                    if (name, measurement_name) not in selection:
                        continue
                    system = systems[name]
                    if not module.applies_to(system):
                        continue
                    await _measure(context, results, module, system, round_no, args)

        # Measurements that build large tables run all their rounds at once.
        for measurement_name, module in MEASUREMENTS.items():
            if not getattr(module, "RUNS_ONCE", False):
                continue
            chosen = [
                systems[name]
                for name in system_names
                if (name, measurement_name) in selection
                and module.applies_to(systems[name])
            ]
            if chosen:
                await module.run_all(
                    context, chosen, args.rounds, results, progress, rotated
                )
    finally:
        dropped = await databases.drop_all()
        progress(f"dropped databases {', '.join(dropped) or '(none)'}")

    results.info["wall time"] = f"{time.perf_counter() - started:.0f} s"
    return results


async def _measure(
    context: Context,
    results: Results,
    module: ModuleType,
    system: System,
    round_no: int,
    args: argparse.Namespace,
) -> None:
    label = f"round {round_no}/{args.rounds} {module.NAME} {system.name}"
    progress(f"{label} ...")
    began = time.perf_counter()
    try:
        samples = await module.run(context, system, round_no)
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        results.failures.append(Failure(module.NAME, system.name, round_no, message))
        progress(f"{label} FAILED: {message}")
        return
    results.samples.extend(samples)
    shown = "; ".join(
        f"{s.case} {report.format_value(s.value, s.unit)} {s.unit}"
        for s in samples
        if s.measurement == module.NAME
    )
    progress(f"{label}: {shown} ({time.perf_counter() - began:.1f} s)")


def write_outputs(results: Results, outputs: list[str]) -> None:
    markdown = report.render(results)
    for output in outputs:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".json":
            path.write_text(json.dumps(results.to_json(), indent=2) + "\n")
        else:
            path.write_text(markdown)
    print(markdown)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        results = asyncio.run(run(args))
    except (ValueError, SystemUnavailable) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_outputs(results, args.output)
    return 1 if results.failures else 0


if __name__ == "__main__":
    sys.exit(main())
