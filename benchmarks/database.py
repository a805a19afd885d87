"""The PostgreSQL server under test: its facts and the bench_* databases made on it.

Every database this module creates is named bench_<label>_<random hex>, and
only those are dropped, so a run never touches a database it did not make.
"""

from __future__ import annotations

import ipaddress
import re
import secrets
from urllib.parse import urlsplit, urlunsplit

import asyncpg

# The server the benchmarks use by default: the local PostgreSQL.
DEFAULT_SERVER_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

_LABEL = re.compile(r"^[a-z][a-z0-9_]{0,30}$")

# Settings whose source shows that someone chose them; the rest are defaults.
_CHOSEN_SOURCES = ("configuration file", "command line", "environment variable")


def masked(url: str) -> str:
    """Return the URL with its password replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def check_loopback(url: str) -> None:
    """Raise ValueError unless the URL points at this machine.

    The benchmark sends sustained load; it must reach only a server on
    loopback or on a unix socket.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(
            f"database URL {masked(url)!r} is invalid; expected postgresql://..."
        )
    host = parts.hostname or ""
    if host in ("", "localhost") or host.startswith("/"):
        return
    try:
        if ipaddress.ip_address(host).is_loopback:
            return
    except ValueError:
        pass
    raise ValueError(
        f"database host {host!r} is not a loopback address; "
        "the benchmark only runs against a server on this machine"
    )


def with_database(url: str, name: str) -> str:
    """Return the URL with its database replaced by `name`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


class BenchDatabases:
    """Creates databases for one run on a server, and drops them all at the end."""

    def __init__(self, server_url: str) -> None:
        check_loopback(server_url)
        self.server_url = server_url
        self._created: list[str] = []

    async def create(self, label: str) -> str:
        """Create an empty database for `label` and return its URL."""
        if not _LABEL.match(label):
            raise ValueError(f"database label {label!r} is invalid; use [a-z0-9_]")
        name = f"bench_{label}_{secrets.token_hex(4)}"

        connection = await asyncpg.connect(self.server_url)
        try:
            # CREATE DATABASE takes no parameters; the name is checked above.
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

        self._created.append(name)
        return with_database(self.server_url, name)

    async def drop_all(self) -> list[str]:
        """Drop every database this object created; returns their names."""
        dropped: list[str] = []
        connection = await asyncpg.connect(self.server_url)
        try:
            while self._created:
                name = self._created.pop()
                # FORCE ends connections left by a worker that did not stop.
                await connection.execute(
                    f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
                )
                dropped.append(name)
        finally:
            await connection.close()
        return dropped


async def server_facts(url: str) -> dict[str, object]:
    """Return the server version and every setting not at its built-in default."""
    connection = await asyncpg.connect(url)
    try:
        version = await connection.fetchval("SELECT version()")
        rows = await connection.fetch(
            """
            SELECT name, setting, unit, source
            FROM pg_settings
            WHERE source = ANY($1::text[])
            ORDER BY name
            """,
            list(_CHOSEN_SOURCES),
        )
    finally:
        await connection.close()

    settings = {
        row["name"]: row["setting"] + (f" ({row['unit']})" if row["unit"] else "")
        for row in rows
    }
    return {"version": version, "settings": settings}
