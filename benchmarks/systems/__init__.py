"""The benchmarked systems, imported on demand so one missing peer names itself."""

from __future__ import annotations

import importlib

from benchmarks.systems.base import System

# name -> (module, class); conveyor first, the raw baseline last.
SYSTEMS = {
    "conveyor": ("benchmarks.systems.conveyor", "Conveyor"),
    "pgqueuer": ("benchmarks.systems.pgqueuer", "PgQueuer"),
    "procrastinate": ("benchmarks.systems.procrastinate", "Procrastinate"),
    "raw": ("benchmarks.systems.raw", "Raw"),
}


class SystemUnavailable(RuntimeError):
    """A system's package is not installed."""


def load(name: str) -> type[System]:
    module_name, class_name = SYSTEMS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SystemUnavailable(
            f"{name} cannot be imported ({exc}); install the benchmark "
            "dependencies with: pip install -e '.[bench]'"
        ) from exc
    system: type[System] = getattr(module, class_name)
    return system
