"""Which driver errors the PostgreSQL store reports as StoreUnavailable."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from conveyor.adapters.postgres.errors import is_unavailable


def adapter_error(sqlstate: str) -> Exception:
    original = asyncpg.PostgresError.new({"C": sqlstate, "M": "message from server"})
    return AsyncAdapt_asyncpg_dbapi.Error("wrapped", original)


@pytest.mark.parametrize(
    ("sqlstate", "unavailable"),
    [
        ("57P03", True),  # the database system is starting up
        ("57P01", True),  # terminating connection due to administrator command
        ("08006", True),  # connection failure
        ("53300", True),  # too many connections
        ("23505", False),  # unique violation: a bug or bad input, not an outage
        ("42P01", False),  # undefined table
    ],
)
def test_adapter_error_by_sqlstate(sqlstate: str, unavailable: bool) -> None:
    assert is_unavailable(adapter_error(sqlstate)) is unavailable


def test_adapter_error_without_cause() -> None:
    assert not is_unavailable(AsyncAdapt_asyncpg_dbapi.Error("no cause"))


def test_refused_connection_is_unavailable() -> None:
    assert is_unavailable(ConnectionRefusedError(111, "Connection refused"))
