"""Alembic migrations of the job store."""

from __future__ import annotations

import asyncio
import sys

import asyncpg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

from conveyor.adapters.postgres.engine import create_engine
from conveyor.adapters.postgres.migrate import (
    MIGRATION_LOCK_KEY,
    alembic_config,
    upgrade,
)
from conveyor.adapters.postgres.tables import metadata


def _schema_differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, metadata))


async def _state_of(url: str) -> tuple[list[str], list[str], list[object]]:
    """Return the alembic versions, the tables and the differences to the metadata."""
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            versions = await connection.scalars(
                sa.text("SELECT version_num FROM alembic_version")
            )
            tables = await connection.scalars(
                sa.text(
                    "SELECT tablename FROM pg_tables"
                    " WHERE schemaname = 'public' ORDER BY tablename"
                )
            )
            differences = await connection.run_sync(_schema_differences)
            return list(versions), list(tables), differences
    finally:
        await engine.dispose()


def _head() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


async def test_migrated_schema_matches_metadata(empty_database_url: str) -> None:
    await upgrade(empty_database_url)

    versions, tables, differences = await _state_of(empty_database_url)

    assert versions == [_head()]
    assert tables == ["alembic_version", "job_attempts", "jobs"]
    assert differences == []


async def test_jobs_table_keeps_room_for_updates(empty_database_url: str) -> None:
    await upgrade(empty_database_url)

    connection = await asyncpg.connect(empty_database_url)
    try:
        options = await connection.fetchval(
            "SELECT reloptions FROM pg_class WHERE relname = 'jobs'"
        )
    finally:
        await connection.close()

    expected = [
        f"{name}={value}"
        for name, value in metadata.tables["jobs"]
        .dialect_options["postgresql"]["with"]
        .items()
    ]
    assert options == expected
    assert options == ["fillfactor=85"]


async def test_upgrade_twice_changes_nothing(empty_database_url: str) -> None:
    await upgrade(empty_database_url)

    await upgrade(empty_database_url)

    versions, _, differences = await _state_of(empty_database_url)
    assert versions == [_head()]
    assert differences == []


async def test_concurrent_upgrades_on_connections(empty_database_url: str) -> None:
    await asyncio.gather(*(upgrade(empty_database_url) for _ in range(6)))

    versions, _, differences = await _state_of(empty_database_url)
    assert versions == [_head()]
    assert differences == []


async def _count_lock_waiters(connection: asyncpg.Connection) -> int:
    count = await connection.fetchval(
        "SELECT count(*) FROM pg_locks"
        " WHERE locktype = 'advisory' AND NOT granted"
        " AND database = (SELECT oid FROM pg_database"
        " WHERE datname = current_database())"
    )
    assert isinstance(count, int)
    return count


async def test_concurrent_upgrades_in_processes(empty_database_url: str) -> None:
    """Processes that start together queue on the advisory lock, then migrate once."""
    holder = await asyncpg.connect(empty_database_url)
    await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "conveyor.adapters.postgres.migrate",
            "--database-url",
            empty_database_url,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(4)
    ]

    for _ in range(600):
        if await _count_lock_waiters(holder) == len(processes):
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the processes did not all wait for the migration lock in 30 s")
    await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    outcomes = [await process.communicate() for process in processes]
    await holder.close()

    for process, (_, stderr) in zip(processes, outcomes, strict=True):
        assert process.returncode == 0, stderr.decode()
    versions, _, differences = await _state_of(empty_database_url)
    assert versions == [_head()]
    assert differences == []
