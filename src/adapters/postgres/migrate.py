"""Schema migrations of the job store, from code or from the command line.

    python -m conveyor.adapters.postgres.migrate --database-url postgresql://...

Safe to run from several processes at once: the migration transaction holds
a PostgreSQL advisory lock, so they migrate one after the other.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from conveyor.adapters.postgres.engine import mask_url, parse_url
from conveyor.adapters.postgres.errors import translate_errors

# Key of the advisory lock held while migrating: the ASCII bytes of
# "conveyor" read as one big-endian 64-bit integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"conveyor", "big", signed=True)

_HERE = Path(__file__).resolve().parent


def alembic_config() -> Config:
    """Return the Alembic configuration that ships inside the package."""
    config = Config(str(_HERE / "alembic.ini"))
    config.set_main_option("script_location", str(_HERE / "migrations"))
    return config


# Alembic keeps the running migration context in module globals, so one
# process runs one migration at a time, each in a thread of its own.
_alembic_lock = threading.Lock()


async def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (the newest by default)."""
    await asyncio.to_thread(upgrade_sync, url, revision)


def upgrade_sync(url: str, revision: str = "head") -> None:
    """Blocking form of `upgrade`, for code that runs no event loop."""
    with _alembic_lock:
        asyncio.run(_upgrade(url, revision))


@translate_errors
async def _upgrade(url: str, revision: str) -> None:
    engine = create_async_engine(parse_url(url), poolclass=NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_alembic, revision)
    finally:
        await engine.dispose()


def _run_alembic(connection: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Create or upgrade the conveyor tables in a PostgreSQL database."
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("CONVEYOR_DATABASE_URL", ""),
        help="postgresql:// URL (default: CONVEYOR_DATABASE_URL)",
    )
    parser.add_argument("--revision", default="head", help="target revision")
    arguments = parser.parse_args(argv)
    if not arguments.database_url:
        parser.error("give --database-url or set CONVEYOR_DATABASE_URL")

    upgrade_sync(arguments.database_url, arguments.revision)
    print(f"migrated {mask_url(arguments.database_url)} to {arguments.revision}")


if __name__ == "__main__":
    main()
