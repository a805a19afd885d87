"""Alembic environment of the conveyor job store.

Migrations run in one transaction that first takes a transaction-level
advisory lock, so processes that start at the same moment migrate one after
the other; the later ones find the schema current and do nothing.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from conveyor.adapters.postgres.engine import parse_url
from conveyor.adapters.postgres.migrate import MIGRATION_LOCK_KEY
from conveyor.adapters.postgres.tables import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        connection.execute(sa.select(sa.func.pg_advisory_xact_lock(MIGRATION_LOCK_KEY)))
        context.run_migrations()


def _url_from_command_line() -> str:
    url = context.get_x_argument(as_dictionary=True).get(
        "database_url"
    ) or os.environ.get("CONVEYOR_DATABASE_URL", "")
    if not url:
        raise SystemExit(
            "no database URL: pass -x database_url=postgresql://... "
            "or set CONVEYOR_DATABASE_URL"
        )
    return url


async def _run_online(url: str) -> None:
    engine = create_async_engine(parse_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(run_migrations)
    finally:
        await engine.dispose()


def _run_offline(url: str) -> None:
    """Print the SQL of the migrations instead of running them (alembic --sql)."""
    context.configure(
        url=parse_url(url),
        target_metadata=metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


given_connection = config.attributes.get("connection")
if given_connection is not None:
    # Called from conveyor.adapters.postgres.migrate, which owns logging.
    run_migrations(given_connection)
else:
    if config.config_file_name is not None:
        fileConfig(config.config_file_name, disable_existing_loggers=False)
    if context.is_offline_mode():
        _run_offline(_url_from_command_line())
    else:
        asyncio.run(_run_online(_url_from_command_line()))
