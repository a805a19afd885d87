"""The HTTP API on the PostgreSQL store, and its responses while the database is down."""

from __future__ import annotations

import asyncio
import secrets
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from conveyor.entrypoints.api import create_app
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.container import build_container

Client = AsyncTestClient[Any]


def postgres_settings(url: str) -> Settings:
    return Settings(store="postgres", database_url=url, pool_size=5)


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[Client]:
    app = create_app(build_container(postgres_settings(database_url)))
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture
def queue() -> str:
    """A queue name of this test only, since the session shares one database."""
    return f"q-{secrets.token_hex(4)}"


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
async def unreachable_client() -> AsyncIterator[Client]:
    """An API whose database URL points at a closed port on loopback."""
    url = f"postgresql://postgres@127.0.0.1:{closed_port()}/postgres"
    app = create_app(build_container(postgres_settings(url)))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_submit_then_get(client: Client, queue: str) -> None:
    submitted = await client.post(
        "/jobs",
        json={"task": "echo", "payload": {"n": [1, 2.5, None]}, "queue": queue},
    )

    fetched = await client.get(f"/jobs/{submitted.json()['job_id']}")

    assert submitted.status_code == 201
    assert fetched.status_code == 200
    job = fetched.json()
    assert job["payload"] == {"n": [1, 2.5, None]}
    assert job["queue"] == queue
    assert job["state"] == "PENDING"
    assert job["attempts"] == []
    assert job["run_at"].endswith("Z")


async def test_concurrent_repeats_create_one_job(client: Client, queue: str) -> None:
    body = {"task": "echo", "queue": queue, "idempotency_key": f"key-{queue}"}

    responses = await asyncio.gather(
        *(client.post("/jobs", json=body) for _ in range(20))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 19 + [201]
    assert len({response.json()["job_id"] for response in responses}) == 1


async def test_conflicting_repeat_is_409(client: Client, queue: str) -> None:
    key = f"key-{queue}"
    await client.post(
        "/jobs", json={"task": "echo", "queue": queue, "idempotency_key": key}
    )

    response = await client.post(
        "/jobs",
        json={"task": "echo", "queue": queue, "payload": 2, "idempotency_key": key},
    )

    assert response.status_code == 409
    assert "different request" in response.json()["detail"]


async def test_batch_honours_keys(client: Client, queue: str) -> None:
    jobs = [
        {
            "task": "echo",
            "queue": queue,
            "payload": i,
            "idempotency_key": f"{queue}-{i}",
        }
        for i in range(3)
    ]
    first = await client.post("/jobs/batch", json={"jobs": jobs})

    second = await client.post(
        "/jobs/batch", json={"jobs": [*jobs, {"task": "echo", "queue": queue}]}
    )

    assert first.status_code == 201
    assert [item["status"] for item in first.json()["jobs"]] == [201, 201, 201]
    assert second.status_code == 201
    assert [item["status"] for item in second.json()["jobs"]] == [200, 200, 200, 201]
    first_ids = [item["job_id"] for item in first.json()["jobs"]]
    assert [item["job_id"] for item in second.json()["jobs"][:3]] == first_ids


async def test_list_pages_by_cursor(client: Client, queue: str) -> None:
    batch = await client.post(
        "/jobs/batch",
        json={
            "jobs": [{"task": "echo", "queue": queue, "payload": i} for i in range(7)]
        },
    )
    ids = [item["job_id"] for item in batch.json()["jobs"]]

    seen: list[int] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"queue": queue, "limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/jobs", params=params)).json()
        seen += [item["job_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(ids, reverse=True)


async def test_cancel_requeue_and_counts(client: Client, queue: str) -> None:
    job_id = (await client.post("/jobs", json={"task": "echo", "queue": queue})).json()[
        "job_id"
    ]

    cancelled = await client.post(f"/jobs/{job_id}/cancel")
    counts_after_cancel = (await client.get("/queues")).json()["queues"]
    twice = await client.post(f"/jobs/{job_id}/cancel")
    requeued = await client.post(f"/jobs/{job_id}/requeue")

    assert cancelled.json()["state"] == "CANCELLED"
    [entry] = [e for e in counts_after_cancel if e["queue"] == queue]
    assert entry["counts"]["CANCELLED"] == 1
    assert entry["counts"]["PENDING"] == 0
    assert twice.status_code == 409
    assert requeued.json()["state"] == "PENDING"


async def test_bad_input_is_4xx_on_postgres(client: Client) -> None:
    nul = await client.post("/jobs", json={"task": "echo", "payload": "a\u0000b"})
    big = await client.post("/jobs", json={"task": "echo", "payload": 10**40})
    missing = await client.get("/jobs/9223372036854775807")

    assert nul.status_code == 422
    assert big.status_code == 201, big.text
    assert big.json()["payload"] == 10**40
    assert missing.status_code == 404


@pytest.mark.parametrize("name", ["queue", "task", "state", "cursor"])
async def test_nul_in_list_filter_is_422(client: Client, name: str) -> None:
    response = await client.get(f"/jobs?{name}=a%00b")

    assert response.status_code == 422, response.text
    assert response.json()["field"] == name


async def test_ready_when_database_up(client: Client) -> None:
    response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json() == {"status": "ready"}


async def test_ready_is_503_when_database_down(unreachable_client: Client) -> None:
    response = await unreachable_client.get("/ready")

    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert "unavailable" in response.json()["detail"]


async def test_submit_is_503_when_database_down(unreachable_client: Client) -> None:
    submit = await unreachable_client.post("/jobs", json={"task": "echo"})
    batch = await unreachable_client.post(
        "/jobs/batch", json={"jobs": [{"task": "echo"}]}
    )
    fetch = await unreachable_client.get("/jobs/1")
    listing = await unreachable_client.get("/jobs")
    counts = await unreachable_client.get("/queues")

    for response in (submit, batch, fetch, listing, counts):
        assert response.status_code == 503, response.text


async def test_health_ignores_database(unreachable_client: Client) -> None:
    response = await unreachable_client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_bad_input_wins_over_outage(unreachable_client: Client) -> None:
    response = await unreachable_client.post(
        "/jobs", json={"task": "echo", "priority": "x"}
    )

    assert response.status_code == 422
