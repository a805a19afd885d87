"""Engine URLs, password masking and the translation of connection errors."""

from __future__ import annotations

import asyncpg
import pytest

from conveyor.adapters.postgres.engine import create_engine, mask_url, parse_url
from conveyor.adapters.postgres.repository import PostgresJobRepository
from conveyor.application.ports import NewJob
from conveyor.domain.errors import StoreUnavailable
from conveyor.domain.job import JobId, JobRequest


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:secret@db.example:5433/jobs",
        "postgres://user:secret@db.example:5433/jobs",
        "postgresql+asyncpg://user:secret@db.example:5433/jobs",
    ],
)
def test_url_schemes_map_to_asyncpg(url: str) -> None:
    parsed = parse_url(url)

    assert parsed.drivername == "postgresql+asyncpg"
    assert parsed.host == "db.example"
    assert parsed.port == 5433
    assert parsed.database == "jobs"
    assert parsed.password == "secret"


def test_socket_url_keeps_host_folder() -> None:
    parsed = parse_url("postgresql://postgres:@/postgres?host=/tmp/pg/data")

    assert parsed.host is None
    assert parsed.query["host"] == "/tmp/pg/data"
    assert parsed.database == "postgres"


def test_other_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="mysql"):
        parse_url("mysql://user@host/db")


def test_mask_url_hides_password() -> None:
    masked = mask_url("postgresql+asyncpg://user:secret@db.example/jobs")

    assert "secret" not in masked
    assert masked == "postgresql://user:***@db.example/jobs"


def test_mask_url_hides_password_parameter() -> None:
    masked = mask_url("postgresql://user@db.example/jobs?password=secret")

    assert "secret" not in masked


def test_mask_url_of_garbage_reveals_nothing() -> None:
    assert mask_url("not a url :secret@") == "<invalid database URL>"


async def test_unreachable_server_raises_store_unavailable() -> None:
    engine = create_engine("postgresql://postgres@127.0.0.1:1/none", pool_size=1)
    repository = PostgresJobRepository(engine)

    with pytest.raises(StoreUnavailable) as caught:
        await repository.add(NewJob(JobRequest("echo"), 3, ""))
    with pytest.raises(StoreUnavailable):
        await repository.get(JobId(1))
    await engine.dispose()

    assert isinstance(caught.value.__cause__, OSError)


async def test_store_survives_terminated_connections(
    repository: PostgresJobRepository, clean_database_url: str
) -> None:
    job = (await repository.add(NewJob(JobRequest("echo"), 3, ""))).job
    killer = await asyncpg.connect(clean_database_url)
    terminated = await killer.fetchval(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    await killer.close()

    stored = await repository.get(job.id)

    assert terminated >= 1
    assert stored is not None
    assert stored.id == job.id
