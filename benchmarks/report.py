"""Markdown rendering of a run: facts, results table, ratios, targets."""

from __future__ import annotations

import statistics
from typing import Any

from benchmarks.results import Results, Summary
from benchmarks.targets import TARGETS

SYSTEM_ORDER = ("conveyor", "pgqueuer", "procrastinate", "raw")
RATIO_BASELINES = ("pgqueuer", "procrastinate", "raw")


def format_value(value: float, unit: str) -> str:
    if unit in ("jobs/s",):
        return f"{value:,.0f}"
    if unit == "ms":
        return f"{value:.2f}"
    return f"{value:,.1f}"


def _cell(summary: Summary | None, unit: str) -> str:
    if summary is None:
        return "-"
    median = format_value(summary.median, unit)
    if summary.count == 1:
        return median
    return f"{median} ({format_value(summary.min, unit)}-{format_value(summary.max, unit)})"


def _ratio_cell(summary: Summary | None) -> str:
    if summary is None:
        return "-"
    return f"{summary.median:.2f}x ({summary.min:.2f}-{summary.max:.2f})"


def _systems(results: Results) -> list[str]:
    present = results.systems()
    return [s for s in SYSTEM_ORDER if s in present] + [
        s for s in present if s not in SYSTEM_ORDER
    ]


def results_table(results: Results) -> list[str]:
    systems = _systems(results)
    lines = [
        "| measurement | case | unit | " + " | ".join(systems) + " |",
        "| --- | --- | --- | " + " | ".join("---:" for _ in systems) + " |",
    ]
    for measurement, case in results.cases():
        unit = results.sample_of(measurement, case).unit
        cells = [_cell(results.summary(measurement, case, s), unit) for s in systems]
        lines.append(f"| {measurement} | {case} | {unit} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(results: Results) -> list[str]:
    baselines = [b for b in RATIO_BASELINES if b in results.systems()]
    lines = [
        "| measurement | case | "
        + " | ".join(f"conveyor / {b}" for b in baselines)
        + " |",
        "| --- | --- | " + " | ".join("---:" for _ in baselines) + " |",
    ]
    for measurement, case in results.cases():
        cells = [
            _ratio_cell(results.ratio_summary(measurement, case, "conveyor", b))
            for b in baselines
        ]
        if all(c == "-" for c in cells):
            continue
        lines.append(f"| {measurement} | {case} | " + " | ".join(cells) + " |")
    return lines


def work_table(results: Results) -> list[str]:
    """Database counters and CPU time per job while one worker process drained.

    Worker CPU is the user and system time of the worker processes; server
    CPU is that of the PostgreSQL processes serving the system's database.
    """
    per_system: dict[str, list[dict[str, float]]] = {}
    for sample in results.samples:
        if (sample.measurement, sample.case) == ("throughput", "1 worker process"):
            if "per_job" in sample.detail:
                per_system.setdefault(sample.system, []).append(
                    sample.detail["per_job"]
                )
    if not per_system:
        return []
    names = list(next(iter(per_system.values()))[0])
    lines = [
        "| system | " + " | ".join(f"{name} per job" for name in names) + " |",
        "| --- | " + " | ".join("---:" for _ in names) + " |",
    ]
    for system in [s for s in _systems(results) if s in per_system]:
        cells = [
            f"{statistics.median(d[name] for d in per_system[system]):.2f}"
            for name in names
        ]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return lines


def target_table(results: Results) -> list[str]:
    lines = ["| target | measured (median) | met |", "| --- | --- | --- |"]
    for target in TARGETS:
        outcome, met = target.check(results)
        verdict = {True: "yes", False: "**no**", None: "-"}[met]
        lines.append(f"| {target.text} | {outcome.shown} | {verdict} |")
    return lines


def _facts(info: dict[str, Any]) -> list[str]:
    lines = []
    for key, value in info.items():
        if isinstance(value, dict):
            lines.append(f"- {key}:")
            lines.extend(f"  - {k}: {v}" for k, v in value.items())
        else:
            lines.append(f"- {key}: {value}")
    return lines


def render(results: Results) -> str:
    rounds = results.info.get("rounds", "?")
    parts = [
        "# Benchmark run",
        "",
        *_facts(results.info),
        "",
        f"## Results: median (min-max) of {rounds} rounds",
        "",
        *results_table(results),
        "",
        "## Ratios: median (min-max) of the ratios taken within each round",
        "",
        *ratio_table(results),
        "",
        "## Work per job, 1 worker process draining (median of rounds)",
        "",
        *work_table(results),
        "",
        "## Targets",
        "",
        *target_table(results),
    ]
    if results.failures:
        parts += ["", "## Failures", ""]
        parts += [
            f"- round {f.round}, {f.measurement}, {f.system}: "
            + f.message.splitlines()[0]
            for f in results.failures
        ]
    return "\n".join(parts) + "\n"
