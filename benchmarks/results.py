"""Samples of a run, their summaries and the ratios taken within each round."""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Sample:
    measurement: str
    case: str
    system: str
    round: int
    value: float
    unit: str
    higher_is_better: bool
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    measurement: str
    system: str
    round: int
    message: str


@dataclass(frozen=True)
class Summary:
    median: float
    min: float
    max: float
    count: int

    @classmethod
    def of(cls, values: list[float]) -> Summary:
        return cls(statistics.median(values), min(values), max(values), len(values))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), interpolated between the nearest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    position = (len(ordered) - 1) * q / 100
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    return ordered[lower] + (ordered[upper] - ordered[lower]) * (position - lower)


@dataclass
class Results:
    info: dict[str, Any] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)

    def cases(self) -> list[tuple[str, str]]:
        """(measurement, case) pairs in the order they were first measured."""
        seen: dict[tuple[str, str], None] = {}
        for sample in self.samples:
            seen.setdefault((sample.measurement, sample.case), None)
        return list(seen)

    def systems(self) -> list[str]:
        seen: dict[str, None] = {}
        for sample in self.samples:
            seen.setdefault(sample.system, None)
        return list(seen)

    def sample_of(self, measurement: str, case: str) -> Sample:
        for sample in self.samples:
            if sample.measurement == measurement and sample.case == case:
                return sample
        raise KeyError((measurement, case))

    def by_round(self, measurement: str, case: str, system: str) -> dict[int, float]:
        return {
            s.round: s.value
            for s in self.samples
            if (s.measurement, s.case, s.system) == (measurement, case, system)
        }

    def summary(self, measurement: str, case: str, system: str) -> Summary | None:
        values = list(self.by_round(measurement, case, system).values())
        return Summary.of(values) if values else None

    def ratios(
        self, measurement: str, case: str, system: str, baseline: str
    ) -> list[float]:
        """system / baseline in each round where both were measured."""
        ours = self.by_round(measurement, case, system)
        theirs = self.by_round(measurement, case, baseline)
        return [
            ours[r] / theirs[r] for r in sorted(ours) if r in theirs and theirs[r] != 0
        ]

    def ratio_summary(
        self, measurement: str, case: str, system: str, baseline: str
    ) -> Summary | None:
        values = self.ratios(measurement, case, system, baseline)
        return Summary.of(values) if values else None

    def to_json(self) -> dict[str, Any]:
        summaries = []
        for measurement, case in self.cases():
            for system in self.systems():
                summary = self.summary(measurement, case, system)
                if summary is not None:
                    summaries.append(
                        {
                            "measurement": measurement,
                            "case": case,
                            "system": system,
                            "unit": self.sample_of(measurement, case).unit,
                            **asdict(summary),
                        }
                    )
        return {
            "info": self.info,
            "samples": [asdict(s) for s in self.samples],
            "failures": [asdict(f) for f in self.failures],
            "summaries": summaries,
        }
