"""Settings read from CONVEYOR_* environment variables, in this one place."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """An environment variable has an invalid value."""


def _int(
    env: Mapping[str, str], name: str, default: int, minimum: int, maximum: int
) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is out of range [{minimum}, {maximum}]")
    return value


def _float(
    env: Mapping[str, str], name: str, default: float, minimum: float, maximum: float
) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name}={value} is out of range [{minimum}, {maximum}]")
    return value


def _list(
    env: Mapping[str, str], name: str, default: tuple[str, ...]
) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    return tuple(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class Settings:
    """Every setting of conveyor; see the configuration table in README.md."""

    # Empty means: start the embedded PostgreSQL in data_dir.
    database_url: str = ""
    store: str = "postgres"
    data_dir: Path = Path(".conveyor")
    host: str = "127.0.0.1"
    port: int = 3000
    max_payload_bytes: int = 1024 * 1024
    default_max_attempts: int = 5
    lease_seconds: float = 30.0
    heartbeat_seconds: float = 10.0
    poll_seconds: float = 1.0
    concurrency: int = 10
    claim_batch: int = 500
    # Jobs a worker claims beyond its free slots; None adapts to job times.
    prefetch: int | None = None
    shutdown_grace_seconds: float = 30.0
    task_timeout_seconds: float = 600.0
    retry_base_seconds: float = 1.0
    retry_max_seconds: float = 3600.0
    queues: tuple[str, ...] = ("default",)
    task_modules: tuple[str, ...] = field(default_factory=tuple)
    log_level: str = "INFO"
    log_format: str = "auto"
    pool_size: int = 10

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        store = env.get("CONVEYOR_STORE", "postgres").strip().lower()
        if store not in ("postgres", "memory"):
            raise ConfigError(
                f"CONVEYOR_STORE={store!r} is invalid; use postgres or memory"
            )
        log_format = env.get("CONVEYOR_LOG_FORMAT", "auto").strip().lower() or "auto"
        if log_format not in ("auto", "console", "json"):
            raise ConfigError(
                f"CONVEYOR_LOG_FORMAT={log_format!r} is invalid; "
                "use auto, console or json"
            )
        settings = cls(
            database_url=env.get("CONVEYOR_DATABASE_URL", "").strip(),
            store=store,
            data_dir=Path(env.get("CONVEYOR_DATA_DIR", ".conveyor")),
            host=env.get("CONVEYOR_HOST", "127.0.0.1"),
            port=_int(env, "CONVEYOR_PORT", 3000, 1, 65535),
            max_payload_bytes=_int(
                env, "CONVEYOR_MAX_PAYLOAD_BYTES", 1024 * 1024, 1024, 1 << 30
            ),
            default_max_attempts=_int(env, "CONVEYOR_MAX_ATTEMPTS", 5, 1, 1000),
            lease_seconds=_float(env, "CONVEYOR_LEASE_SECONDS", 30.0, 0.5, 86400),
            heartbeat_seconds=_float(
                env, "CONVEYOR_HEARTBEAT_SECONDS", 10.0, 0.1, 3600
            ),
            poll_seconds=_float(env, "CONVEYOR_POLL_SECONDS", 1.0, 0.01, 3600),
            concurrency=_int(env, "CONVEYOR_CONCURRENCY", 10, 1, 10_000),
            claim_batch=_int(env, "CONVEYOR_CLAIM_BATCH", 500, 1, 10_000),
            prefetch=(
                _int(env, "CONVEYOR_PREFETCH", 0, 0, 10_000)
                if env.get("CONVEYOR_PREFETCH", "").strip()
                else None
            ),
            shutdown_grace_seconds=_float(
                env, "CONVEYOR_SHUTDOWN_GRACE_SECONDS", 30.0, 0, 86400
            ),
            task_timeout_seconds=_float(
                env, "CONVEYOR_TASK_TIMEOUT_SECONDS", 600.0, 0.01, 7 * 86400
            ),
            retry_base_seconds=_float(
                env, "CONVEYOR_RETRY_BASE_SECONDS", 1.0, 0, 86400
            ),
            retry_max_seconds=_float(
                env, "CONVEYOR_RETRY_MAX_SECONDS", 3600.0, 0, 30 * 86400
            ),
            queues=_list(env, "CONVEYOR_QUEUES", ("default",)),
            task_modules=_list(env, "CONVEYOR_TASK_MODULES", ()),
            log_level=env.get("CONVEYOR_LOG_LEVEL", "INFO").upper(),
            log_format=log_format,
            pool_size=_int(env, "CONVEYOR_POOL_SIZE", 10, 1, 1000),
        )
        settings.check()
        return settings

    def check(self) -> None:
        if self.heartbeat_seconds >= self.lease_seconds:
            raise ConfigError(
                f"CONVEYOR_HEARTBEAT_SECONDS ({self.heartbeat_seconds}) must be shorter "
                f"than CONVEYOR_LEASE_SECONDS ({self.lease_seconds}), or leases expire "
                "while jobs still run"
            )
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ConfigError(
                "CONVEYOR_RETRY_MAX_SECONDS must be at least CONVEYOR_RETRY_BASE_SECONDS"
            )
