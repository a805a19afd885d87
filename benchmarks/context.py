"""What a measurement needs from the run: sizes, log folder, databases."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.database import BenchDatabases
from benchmarks.settings import Sizes


@dataclass
class Context:
    sizes: Sizes
    log_dir: Path
    databases: BenchDatabases
    # Settings given with --param, by system name.
    params: dict[str, dict[str, Any]] = field(default_factory=dict)
