"""The logging pipeline: one line per event, in console or JSON form, on one stream."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from conveyor.entrypoints.config import ConfigError
from conveyor.entrypoints.logging import apply_logging, get_logger, resolve_format


class _Terminal(io.BytesIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def _lines(stream: io.BytesIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.mark.usefixtures("restore_logging")
def test_json_line_carries_timestamp_level_logger_and_fields() -> None:
    stream = io.BytesIO()
    apply_logging("INFO", "json", stream)

    get_logger("conveyor.worker").bind(worker_id="w1").info(
        "job_completed", job_id=7, task="mail", queue="default", attempt=1
    )

    [line] = _lines(stream)
    assert line["event"] == "job_completed"
    assert line["level"] == "info"
    assert line["logger"] == "conveyor.worker"
    assert str(line["timestamp"]).endswith("Z")
    assert line["worker_id"] == "w1"
    assert (line["job_id"], line["task"], line["attempt"]) == (7, "mail", 1)


@pytest.mark.usefixtures("restore_logging")
def test_lines_below_the_level_are_dropped() -> None:
    stream = io.BytesIO()
    apply_logging("INFO", "json", stream)

    get_logger("conveyor.worker").debug("job_started", job_id=7)

    assert stream.getvalue() == b""


@pytest.mark.usefixtures("restore_logging")
def test_stdlib_records_share_the_stream_and_format() -> None:
    stream = io.BytesIO()
    apply_logging("INFO", "json", stream)

    logging.getLogger("uvicorn.error").warning("port %d busy", 3000)

    [line] = _lines(stream)
    assert line["event"] == "port 3000 busy"
    assert line["level"] == "warning"
    assert line["logger"] == "uvicorn.error"
    assert "timestamp" in line


@pytest.mark.usefixtures("restore_logging")
def test_exception_goes_into_the_json_line() -> None:
    stream = io.BytesIO()
    apply_logging("INFO", "json", stream)

    try:
        raise RuntimeError("boom")
    except RuntimeError:
        get_logger("conveyor.worker").exception("claim_failed")

    [line] = _lines(stream)
    assert "RuntimeError: boom" in str(line["exception"])


@pytest.mark.usefixtures("restore_logging")
def test_values_without_json_form_are_written_as_text() -> None:
    stream = io.BytesIO()
    apply_logging("INFO", "json", stream)

    get_logger("conveyor.worker").info("worker_started", error=ValueError("bad"))

    assert _lines(stream)[0]["error"] == "bad"


@pytest.mark.usefixtures("restore_logging")
def test_console_format_writes_one_readable_line() -> None:
    stream = io.BytesIO()
    apply_logging("INFO", "console", stream)

    get_logger("conveyor.worker").info("job_completed", job_id=7)

    text = stream.getvalue().decode()
    assert text.count("\n") == 1
    assert "job_completed" in text
    assert "job_id=7" in text


def test_auto_format_follows_the_terminal() -> None:
    assert resolve_format("auto", _Terminal()) == "console"
    assert resolve_format("auto", io.BytesIO()) == "json"
    assert resolve_format("json", _Terminal()) == "json"


def test_unknown_format_is_rejected() -> None:
    with pytest.raises(ConfigError, match="CONVEYOR_LOG_FORMAT"):
        apply_logging("INFO", "xml", io.BytesIO())
