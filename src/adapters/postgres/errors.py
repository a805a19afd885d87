"""Translation of driver and connection errors into StoreUnavailable."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import asyncpg
from sqlalchemy import exc as sa_exc

from conveyor.domain.errors import StoreUnavailable

P = ParamSpec("P")
T = TypeVar("T")

# SQLSTATE classes and codes that mean the server cannot serve us right now:
# connection exceptions, insufficient resources (such as too many clients),
# operator intervention (shutdown, restart), and a server still starting.
_UNAVAILABLE_CLASSES = ("08", "53", "57")
# Deadlocks and serialization failures that survived the store's own retries
# are transient too: the client should send the request again.
_UNAVAILABLE_CODES = frozenset({"3D000", "28000", "28P01", "40P01", "40001"})


def is_unavailable(error: BaseException) -> bool:
    """Tell whether `error` means the database cannot be reached or used now."""
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        return _sqlstate_unavailable(getattr(error.orig, "sqlstate", None))
    if isinstance(error, asyncpg.PostgresError):
        return _sqlstate_unavailable(error.sqlstate)
    if isinstance(error, sa_exc.EmulatedDBAPIException):
        # SQLAlchemy's asyncpg adapter raises these unwrapped while it opens a
        # pooled connection, for example "the database system is starting up".
        if error.orig is not None and is_unavailable(error.orig):
            return True
        return _sqlstate_unavailable(getattr(error, "sqlstate", None))
    return isinstance(
        error,
        OSError  # refused, reset, DNS failure; TimeoutError is an OSError too
        | asyncpg.InterfaceError
        | sa_exc.TimeoutError,  # no pooled connection became free in time
    )


def _sqlstate_unavailable(sqlstate: str | None) -> bool:
    if sqlstate is None:
        return False
    return sqlstate[:2] in _UNAVAILABLE_CLASSES or sqlstate in _UNAVAILABLE_CODES


def translate_errors(
    method: Callable[P, Coroutine[Any, Any, T]],
) -> Callable[P, Coroutine[Any, Any, T]]:
    """Raise StoreUnavailable from errors that mean the database is out of reach.

    Other errors pass through unchanged: they are bugs or bad input, and
    retrying would not help.
    """

    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as exc:
            if is_unavailable(exc):
                raise StoreUnavailable(
                    f"PostgreSQL job store is unavailable: {_describe(exc)}"
                ) from exc
            raise

    return wrapper


def connection_lost(error: BaseException) -> StoreUnavailable:
    """Return the StoreUnavailable for `error`, raised on a connection that closed."""
    return StoreUnavailable(f"PostgreSQL job store is unavailable: {_describe(error)}")


def _describe(error: BaseException) -> str:
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        error = error.orig
    return f"{type(error).__name__}: {error}".strip()
