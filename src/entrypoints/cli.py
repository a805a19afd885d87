"""The `conveyor` command line.

Settings come from CONVEYOR_* environment variables (see config.py); the
options here override them for one run. `api`, `worker` and `migrate` need
CONVEYOR_DATABASE_URL with the PostgreSQL store: they stop with an error
rather than start a database of their own, and `conveyor dev` is the command
that starts the embedded one. `submit`, `show` and `list` talk to a running
API over HTTP (--api-url), so they work against `conveyor dev` as well.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from conveyor.entrypoints.config import ConfigError, Settings

DEFAULT_API_URL = "http://127.0.0.1:3000"

F = TypeVar("F", bound=Callable[..., Any])


def _load_settings(**overrides: Any) -> Settings:
    """Read the environment, apply the options that were given, and check the result."""
    try:
        settings = Settings.from_env()
        changes = {key: value for key, value in overrides.items() if value is not None}
        settings = dataclasses.replace(settings, **changes)
        settings.check()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    return settings


def _configure_logging(settings: Settings) -> None:
    from conveyor.entrypoints.logging import configure_logging

    try:
        configure_logging(settings.log_level, settings.log_format)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def _require_database(settings: Settings, command: str) -> None:
    if settings.store == "postgres" and not settings.database_url:
        raise click.ClickException(
            f"`conveyor {command}` needs CONVEYOR_DATABASE_URL (a postgresql:// URL); "
            "set it, or run `conveyor dev` to start everything on the embedded "
            "PostgreSQL"
        )


def _split_names(values: Sequence[str]) -> tuple[str, ...] | None:
    """Turn ("a,b", "c") into ("a", "b", "c"); None when nothing was given."""
    names = [part.strip() for value in values for part in value.split(",")]
    names = [name for name in names if name]
    return tuple(names) or None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="conveyor")
def main() -> None:
    """conveyor: background jobs for Python on PostgreSQL."""


# Servers


@main.command()
@click.option("--host", help="Address to listen on [CONVEYOR_HOST, 127.0.0.1].")
@click.option("--port", type=int, help="Port to listen on [CONVEYOR_PORT, 3000].")
@click.option(
    "--store",
    type=click.Choice(["postgres", "memory"]),
    help="Job store [CONVEYOR_STORE, postgres]; memory keeps jobs in this process only.",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    help="Log one line per HTTP request (off by default: it costs throughput).",
)
def api(
    host: str | None, port: int | None, store: str | None, access_log: bool
) -> None:
    """Serve the HTTP API with uvicorn in this process."""
    settings = _load_settings(host=host, port=port, store=store)
    _configure_logging(settings)
    _require_database(settings, "api")

    import uvicorn

    from conveyor.entrypoints.api import create_app
    from conveyor.entrypoints.api.server import CoalescingHttpToolsProtocol
    from conveyor.entrypoints.container import build_container

    app = create_app(build_container(settings))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=CoalescingHttpToolsProtocol,
        log_config=None,
        access_log=access_log,
        lifespan="on",
        server_header=False,
    )
    server = uvicorn.Server(config)
    server.run()
    if not server.started:
        # uvicorn already logged why: the port is taken, or startup failed.
        sys.exit(3)


@main.command()
@click.option(
    "--queues",
    "queues",
    multiple=True,
    help="Queues to take jobs from, comma-separated or repeated [CONVEYOR_QUEUES, default].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    help="Jobs run at once by this process [CONVEYOR_CONCURRENCY, 10].",
)
@click.option(
    "--tasks",
    "task_modules",
    multiple=True,
    help=(
        "Python module whose @task functions to load; repeat or comma-separate "
        "[CONVEYOR_TASK_MODULES]. The built-in echo, sleep and fail are always loaded."
    ),
)
def worker(
    queues: tuple[str, ...], concurrency: int | None, task_modules: tuple[str, ...]
) -> None:
    """Run a worker until SIGTERM or Ctrl-C, then drain its running jobs."""
    settings = _load_settings(
        queues=_split_names(queues),
        concurrency=concurrency,
        task_modules=_split_names(task_modules),
    )
    _configure_logging(settings)
    _require_database(settings, "worker")
    if settings.store == "memory":
        raise click.ClickException(
            "a worker needs the postgres store: the memory store lives inside "
            "one process, so no API could give this worker jobs"
        )

    from conveyor.entrypoints.container import build_container, shutdown
    from conveyor.entrypoints.worker import run_event_loop, run_worker

    async def run() -> None:
        container = build_container(settings)
        try:
            await run_worker(settings, container)
        finally:
            await shutdown(container)

    with _reported_errors():
        run_event_loop(run())


@main.command()
def migrate() -> None:
    """Create or upgrade the job tables in CONVEYOR_DATABASE_URL's database."""
    settings = _load_settings()
    _configure_logging(settings)
    _require_database(settings, "migrate")

    from conveyor.adapters.postgres.migrate import upgrade_sync
    from conveyor.entrypoints.embedded import display_url

    with _reported_errors():
        upgrade_sync(settings.database_url)
    click.echo(f"migrated {display_url(settings.database_url)}")


@main.command()
@click.option("--host", help="Address of the API [CONVEYOR_HOST, 127.0.0.1].")
@click.option("--port", type=int, help="Port of the API [CONVEYOR_PORT, 3000].")
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    help="Jobs the worker runs at once [CONVEYOR_CONCURRENCY, 10].",
)
@click.option(
    "--tasks",
    "task_modules",
    multiple=True,
    help="Task modules for the worker and the API [CONVEYOR_TASK_MODULES].",
)
def dev(
    host: str | None,
    port: int | None,
    concurrency: int | None,
    task_modules: tuple[str, ...],
) -> None:
    """Run migrations, the API and one worker together; Ctrl-C stops them all.

    With no CONVEYOR_DATABASE_URL it first starts the embedded PostgreSQL in
    CONVEYOR_DATA_DIR/pgdata (.conveyor/pgdata by default), whose data is kept
    between runs.
    """
    settings = _load_settings(
        host=host,
        port=port,
        concurrency=concurrency,
        task_modules=_split_names(task_modules),
        store="postgres",
    )
    _configure_logging(settings)

    from conveyor.entrypoints.devserver import run_dev

    with _reported_errors():
        sys.exit(run_dev(settings))


# Clients of the API


def _api_url_option(function: F) -> F:
    decorated: F = click.option(
        "--api-url",
        envvar="CONVEYOR_API_URL",
        default=DEFAULT_API_URL,
        show_default=True,
        help="Base URL of the conveyor API [CONVEYOR_API_URL].",
    )(function)
    return decorated


def _reject_constant(name: str) -> object:
    """Reject NaN and Infinity, which Python's json module reads but JSON lacks."""
    raise ValueError(f"{name} is not a JSON value")


@main.command()
@click.argument("task")
@click.option("--payload", default="null", help="The job's payload as JSON.")
@click.option("--queue", help="Queue [the task's queue, else default].")
@click.option("--priority", type=int, help="Higher runs first [0].")
@click.option("--delay", type=float, help="Seconds to wait before the job is due.")
@click.option(
    "--max-attempts", type=int, help="Attempts before DEAD [CONVEYOR_MAX_ATTEMPTS]."
)
@click.option(
    "--key", "idempotency_key", help="Idempotency key: a repeat returns the first job."
)
@_api_url_option
def submit(
    task: str,
    payload: str,
    queue: str | None,
    priority: int | None,
    delay: float | None,
    max_attempts: int | None,
    idempotency_key: str | None,
    api_url: str,
) -> None:
    """Submit one job of TASK and print it as JSON."""
    try:
        payload_value = json.loads(payload, parse_constant=_reject_constant)
        # Encoding finds what decoding lets through: a lone surrogate.
        json.dumps(payload_value, ensure_ascii=False).encode()
    except (json.JSONDecodeError, ValueError) as exc:
        raise click.BadParameter(
            f"is not valid JSON: {exc}", param_hint="--payload"
        ) from None

    with _api_client(api_url) as client:
        submitted = client.submit(
            task,
            payload_value,
            queue=queue,
            priority=priority,
            delay=delay,
            max_attempts=max_attempts,
            idempotency_key=idempotency_key,
        )
    if not submitted.created:
        click.echo("an existing job holds this key; nothing new was created", err=True)
    _print_json(submitted.job)


@main.command()
@click.argument("job_id", type=click.IntRange(min=1))
@_api_url_option
def show(job_id: int, api_url: str) -> None:
    """Print one job with its attempts as JSON."""
    with _api_client(api_url) as client:
        _print_json(client.get(job_id))


@main.command(name="list")
@click.option(
    "--state", "states", multiple=True, help="Only jobs in this state; repeatable."
)
@click.option(
    "--queue", "queues", multiple=True, help="Only jobs of this queue; repeatable."
)
@click.option(
    "--task", "tasks", multiple=True, help="Only jobs of this task; repeatable."
)
@click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
@click.option("--cursor", help="The next_cursor printed by a previous page.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON page.")
@_api_url_option
def list_jobs(
    states: tuple[str, ...],
    queues: tuple[str, ...],
    tasks: tuple[str, ...],
    limit: int,
    cursor: str | None,
    as_json: bool,
    api_url: str,
) -> None:
    """List jobs, newest first."""
    with _api_client(api_url) as client:
        page = client.list_jobs(
            states=states, queues=queues, tasks=tasks, limit=limit, cursor=cursor
        )
    if as_json:
        _print_json({"items": page.items, "next_cursor": page.next_cursor})
        return
    click.echo(f"{'JOB_ID':>10}  {'STATE':<11}  {'ATTEMPT':>7}  {'QUEUE':<12}  TASK")
    for job in page.items:
        attempts = f"{job['attempt']}/{job['max_attempts']}"
        click.echo(
            f"{job['job_id']:>10}  {job['state']:<11}  {attempts:>7}  "
            f"{job['queue']:<12}  {job['task']}"
        )
    if page.next_cursor:
        click.echo(f"more: conveyor list --cursor {page.next_cursor}")


def _print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


@contextmanager
def _api_client(api_url: str) -> Iterator[Any]:
    import httpx

    from conveyor.entrypoints.client import ApiError, ConveyorClient

    try:
        with ConveyorClient(api_url) as client:
            yield client
    except ApiError as exc:
        raise click.ClickException(exc.detail) from None
    except httpx.TransportError as exc:
        raise click.ClickException(
            f"cannot reach the conveyor API at {api_url} ({exc}); start it with "
            "`conveyor dev` or `conveyor api`, or pass --api-url"
        ) from None


@contextmanager
def _reported_errors() -> Iterator[None]:
    """Turn expected failures into one-line errors instead of tracebacks."""
    from conveyor.domain.errors import StoreUnavailable
    from conveyor.entrypoints.embedded import EmbeddedPostgresError

    try:
        yield
    except (ConfigError, ImportError, StoreUnavailable, EmbeddedPostgresError) as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
