"""conveyor: background jobs for Python with PostgreSQL as the only infrastructure."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conveyor.entrypoints.tasks import task

__all__ = ["task"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import conveyor` stays cheap for the API and CLI.
    if name == "task":
        from conveyor.entrypoints.tasks import task

        return task
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
