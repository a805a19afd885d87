"""Settings from CONVEYOR_* variables, and the README's table of them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conveyor.entrypoints.config import ConfigError, Settings

ROOT = Path(__file__).resolve().parents[2]


def test_empty_environment_gives_defaults() -> None:
    assert Settings.from_env({}) == Settings()


# (variable, value, attribute, expected)
PARSED = [
    (
        "CONVEYOR_DATABASE_URL",
        " postgresql://u@h/db ",
        "database_url",
        "postgresql://u@h/db",
    ),
    ("CONVEYOR_STORE", "MEMORY", "store", "memory"),
    ("CONVEYOR_DATA_DIR", "/var/lib/conveyor", "data_dir", Path("/var/lib/conveyor")),
    ("CONVEYOR_HOST", "0.0.0.0", "host", "0.0.0.0"),
    ("CONVEYOR_PORT", "8080", "port", 8080),
    ("CONVEYOR_MAX_PAYLOAD_BYTES", "4096", "max_payload_bytes", 4096),
    ("CONVEYOR_MAX_ATTEMPTS", "9", "default_max_attempts", 9),
    ("CONVEYOR_LEASE_SECONDS", "60", "lease_seconds", 60.0),
    ("CONVEYOR_HEARTBEAT_SECONDS", "5", "heartbeat_seconds", 5.0),
    ("CONVEYOR_POLL_SECONDS", "0.5", "poll_seconds", 0.5),
    ("CONVEYOR_CONCURRENCY", "32", "concurrency", 32),
    ("CONVEYOR_CLAIM_BATCH", "7", "claim_batch", 7),
    ("CONVEYOR_PREFETCH", "0", "prefetch", 0),
    ("CONVEYOR_PREFETCH", "25", "prefetch", 25),
    ("CONVEYOR_PREFETCH", "", "prefetch", None),
    ("CONVEYOR_SHUTDOWN_GRACE_SECONDS", "0", "shutdown_grace_seconds", 0.0),
    ("CONVEYOR_TASK_TIMEOUT_SECONDS", "12.5", "task_timeout_seconds", 12.5),
    ("CONVEYOR_RETRY_BASE_SECONDS", "2", "retry_base_seconds", 2.0),
    ("CONVEYOR_RETRY_MAX_SECONDS", "60", "retry_max_seconds", 60.0),
    ("CONVEYOR_QUEUES", "mail, reports,,", "queues", ("mail", "reports")),
    (
        "CONVEYOR_TASK_MODULES",
        "app.tasks,app.more",
        "task_modules",
        ("app.tasks", "app.more"),
    ),
    ("CONVEYOR_LOG_LEVEL", "debug", "log_level", "DEBUG"),
    ("CONVEYOR_LOG_FORMAT", "JSON", "log_format", "json"),
    ("CONVEYOR_LOG_FORMAT", "console", "log_format", "console"),
    ("CONVEYOR_LOG_FORMAT", "", "log_format", "auto"),
    ("CONVEYOR_POOL_SIZE", "3", "pool_size", 3),
]


@pytest.mark.parametrize(
    ("variable", "value", "attribute", "expected"),
    PARSED,
    ids=[row[0] for row in PARSED],
)
def test_variable_sets_its_setting(
    variable: str, value: str, attribute: str, expected: object
) -> None:
    settings = Settings.from_env({variable: value})

    assert getattr(settings, attribute) == expected


REJECTED = [
    ("CONVEYOR_STORE", "redis"),
    ("CONVEYOR_PORT", "http"),
    ("CONVEYOR_PORT", "70000"),
    ("CONVEYOR_MAX_PAYLOAD_BYTES", "10"),
    ("CONVEYOR_MAX_ATTEMPTS", "0"),
    ("CONVEYOR_LEASE_SECONDS", "soon"),
    ("CONVEYOR_CONCURRENCY", "-1"),
    ("CONVEYOR_LOG_FORMAT", "xml"),
]


@pytest.mark.parametrize(("variable", "value"), REJECTED)
def test_bad_value_names_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({variable: value})

    assert variable in str(caught.value)


def test_log_format_is_auto_by_default() -> None:
    assert Settings.from_env({}).log_format == "auto"


def test_heartbeat_must_be_shorter_than_lease() -> None:
    env = {"CONVEYOR_LEASE_SECONDS": "5", "CONVEYOR_HEARTBEAT_SECONDS": "5"}

    with pytest.raises(ConfigError, match="CONVEYOR_HEARTBEAT_SECONDS"):
        Settings.from_env(env)


def test_every_variable_is_tested_here() -> None:
    source = (ROOT / "src" / "entrypoints" / "config.py").read_text()
    variables = set(re.findall(r'"(CONVEYOR_[A-Z_]+)"', source))

    assert variables == {row[0] for row in PARSED}


def test_readme_documents_every_variable() -> None:
    source = (ROOT / "src" / "entrypoints" / "config.py").read_text()
    readme = (ROOT / "README.md").read_text()
    table_rows = set(re.findall(r"^\| `(CONVEYOR_[A-Z_]+)` \|", readme, re.MULTILINE))

    assert set(re.findall(r'"(CONVEYOR_[A-Z_]+)"', source)) <= table_rows
