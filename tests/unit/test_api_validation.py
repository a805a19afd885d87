"""The HTTP API on the in-memory store: bad input, then every endpoint's happy path."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from conveyor.application.executing import ExecuteJobs
from conveyor.domain.job import WorkerId
from conveyor.entrypoints.api import create_app
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.container import Container, build_container, resolve_as

MAX_PAYLOAD = 2048
BUILTINS = "conveyor.entrypoints.builtin_tasks"

Client = AsyncTestClient[Any]


def memory_settings(**changes: Any) -> Settings:
    values: dict[str, Any] = {"store": "memory", "max_payload_bytes": MAX_PAYLOAD}
    values.update(changes)
    return Settings(**values)


@pytest.fixture
def container() -> Container:
    return build_container(memory_settings())


@pytest.fixture
async def client(container: Container) -> AsyncIterator[Client]:
    async with AsyncTestClient(create_app(container)) as test_client:
        yield test_client


@pytest.fixture
async def checked_client() -> AsyncIterator[Client]:
    """A client whose API loaded the built-in tasks, so it rejects unknown ones."""
    container = build_container(memory_settings(task_modules=(BUILTINS,)))
    async with AsyncTestClient(create_app(container)) as test_client:
        yield test_client


# Later than the 365 days a job may wait, whenever the tests run.
FAR_RUN_AT = (datetime.now(UTC) + timedelta(days=366)).isoformat()


def raw(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


# (case id, body, expected status, field the error must name)
SUBMIT_CASES: list[tuple[str, Any, int, str | None]] = [
    ("malformed json", b'{"task": ', 400, "body"),
    ("empty body", b"", 400, "body"),
    ("array body", [1, 2], 422, "body"),
    ("number body", 5, 422, "body"),
    ("string body", "echo", 422, "body"),
    ("missing task", {}, 422, "task"),
    ("task not a string", {"task": 5}, 422, "task"),
    ("task empty", {"task": ""}, 422, "task"),
    ("task with a space", {"task": "send mail"}, 422, "task"),
    ("task too long", {"task": "t" * 201}, 422, "task"),
    ("unknown field", {"task": "echo", "colour": "red"}, 422, "colour"),
    ("priority as string", {"task": "echo", "priority": "5"}, 422, "priority"),
    ("priority as bool", {"task": "echo", "priority": True}, 422, "priority"),
    ("priority as float", {"task": "echo", "priority": 1.5}, 422, "priority"),
    ("priority huge", {"task": "echo", "priority": 40000}, 422, "priority"),
    ("priority very negative", {"task": "echo", "priority": -40000}, 422, "priority"),
    ("priority beyond int64", {"task": "echo", "priority": 10**30}, 422, "priority"),
    ("delay negative", {"task": "echo", "delay": -1}, 422, "delay"),
    ("delay huge", {"task": "echo", "delay": 1e12}, 422, "delay"),
    ("delay as string", {"task": "echo", "delay": "10"}, 422, "delay"),
    (
        "run_at naive",
        {"task": "echo", "run_at": "2030-01-01T00:00:00"},
        422,
        "run_at",
    ),
    ("run_at not a date", {"task": "echo", "run_at": "tomorrow"}, 422, "run_at"),
    ("run_at as number", {"task": "echo", "run_at": 1893456000}, 422, "run_at"),
    (
        "run_at and delay",
        {"task": "echo", "run_at": "2030-01-01T00:00:00Z", "delay": 5},
        422,
        "run_at",
    ),
    (
        "run_at overflows at the end",
        {"task": "echo", "run_at": "9999-12-31T23:59:59-14:00"},
        422,
        "run_at",
    ),
    (
        "run_at overflows at the start",
        {"task": "echo", "run_at": "0001-01-01T00:00:00+14:00"},
        422,
        "run_at",
    ),
    (
        "run_at beyond a year",
        {"task": "echo", "run_at": FAR_RUN_AT},
        422,
        "run_at",
    ),
    ("max_attempts zero", {"task": "echo", "max_attempts": 0}, 422, "max_attempts"),
    ("max_attempts huge", {"task": "echo", "max_attempts": 1001}, 422, "max_attempts"),
    (
        "max_attempts as string",
        {"task": "echo", "max_attempts": "3"},
        422,
        "max_attempts",
    ),
    ("queue empty", {"task": "echo", "queue": ""}, 422, "queue"),
    ("queue with a slash", {"task": "echo", "queue": "a/b"}, 422, "queue"),
    ("key empty", {"task": "echo", "idempotency_key": ""}, 422, "idempotency_key"),
    (
        "key too long",
        {"task": "echo", "idempotency_key": "k" * 256},
        422,
        "idempotency_key",
    ),
    (
        "payload too large",
        {"task": "echo", "payload": "x" * MAX_PAYLOAD},
        413,
        "payload",
    ),
    ("body too large", {"task": "echo", "payload": "x" * 200_000}, 413, None),
    ("payload with NUL", {"task": "echo", "payload": {"a": "x\u0000"}}, 422, "payload"),
    (
        "payload key with NUL",
        {"task": "echo", "payload": {"\u0000": 1}},
        422,
        "payload",
    ),
    (
        "payload nested too deeply",
        b'{"task": "echo", "payload": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        400,
        "body",
    ),
    (
        "payload with lone surrogate",
        b'{"task": "echo", "payload": "\\ud800"}',
        422,
        "payload",
    ),
    (
        "payload with lone low surrogate",
        b'{"task": "echo", "payload": {"a": ["\\udc00"]}}',
        422,
        "payload",
    ),
    ("task with lone surrogate", b'{"task": "\\ud800"}', 422, "task"),
    ("payload number too big", b'{"task": "echo", "payload": 1e400}', 422, "payload"),
    (
        "key with NUL",
        {"task": "echo", "idempotency_key": "a\u0000"},
        422,
        "idempotency_key",
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [case[1:] for case in SUBMIT_CASES],
    ids=[case[0] for case in SUBMIT_CASES],
)
async def test_submit_rejects_bad_input(
    client: Client, body: Any, status: int, field: str | None
) -> None:
    response = await client.post("/jobs", content=raw(body))

    assert response.status_code == status, response.text
    error = response.json()
    assert error["status_code"] == status
    assert error.get("field") == field
    if field is not None:
        assert error["detail"].startswith(f"{field}: ")
    assert len(error["detail"]) > len(f"{field}: ")


BATCH_CASES: list[tuple[str, Any, int, str | None]] = [
    ("jobs missing", {}, 422, "jobs"),
    ("batch body an array", [{"task": "echo"}], 422, "body"),
    (
        "item payload with lone surrogate",
        b'{"jobs": [{"task": "echo"}, {"task": "echo", "payload": "\\ud800"}]}',
        422,
        "jobs[1].payload",
    ),
    ("jobs not a list", {"jobs": {"task": "echo"}}, 422, "jobs"),
    (
        "item priority huge",
        {"jobs": [{"task": "echo"}, {"task": "echo", "priority": 99999}]},
        422,
        "jobs[1].priority",
    ),
    (
        "item unknown field",
        {"jobs": [{"task": "echo", "colour": "red"}]},
        422,
        "jobs[0].colour",
    ),
    ("item missing task", {"jobs": [{"payload": 1}]}, 422, "jobs[0].task"),
    (
        "item task invalid",
        {"jobs": [{"task": "echo"}, {"task": "no spaces"}]},
        422,
        "jobs[1].task",
    ),
    (
        "item run_at and delay",
        {"jobs": [{"task": "echo", "run_at": "2030-01-01T00:00:00Z", "delay": 1}]},
        422,
        "jobs[0].run_at",
    ),
    (
        "key repeated in batch",
        {
            "jobs": [
                {"task": "echo", "idempotency_key": "a"},
                {"task": "echo", "idempotency_key": "a"},
            ]
        },
        422,
        "jobs[1].idempotency_key",
    ),
    (
        "item payload too large",
        {"jobs": [{"task": "echo", "payload": "x" * MAX_PAYLOAD}]},
        413,
        "jobs[0].payload",
    ),
    (
        "item run_at overflows",
        {
            "jobs": [
                {"task": "echo"},
                {"task": "echo", "run_at": "9999-12-31T23:59:59-14:00"},
            ]
        },
        422,
        "jobs[1].run_at",
    ),
    (
        "item run_at beyond a year",
        {"jobs": [{"task": "echo", "run_at": FAR_RUN_AT}]},
        422,
        "jobs[0].run_at",
    ),
    ("too many items", {"jobs": [{"task": "echo"}] * 10_001}, 422, "jobs"),
]


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [case[1:] for case in BATCH_CASES],
    ids=[case[0] for case in BATCH_CASES],
)
async def test_batch_rejects_bad_input(
    client: Client, body: Any, status: int, field: str | None
) -> None:
    response = await client.post("/jobs/batch", content=raw(body))

    assert response.status_code == status, response.text
    error = response.json()
    assert error.get("field") == field
    assert error["detail"].startswith(f"{field}: ")

    listed = await client.get("/jobs")
    assert listed.json()["items"] == []


QUERY_CASES: list[tuple[str, str, str]] = [
    ("unknown state", "/jobs?state=RUNNING", "state"),
    ("unknown state in list", "/jobs?state=PENDING,LOST", "state"),
    ("limit not a number", "/jobs?limit=ten", "limit"),
    ("limit zero", "/jobs?limit=0", "limit"),
    ("limit too large", "/jobs?limit=501", "limit"),
    ("cursor garbage", "/jobs?cursor=%25%25%25", "cursor"),
    ("cursor forged", "/jobs?cursor=aGVsbG8", "cursor"),
    ("queue with NUL", "/jobs?queue=a%00b", "queue"),
    ("task with NUL", "/jobs?task=a%00b", "task"),
    ("state with NUL", "/jobs?state=PENDING%00", "state"),
    ("cursor with NUL", "/jobs?cursor=a%00b", "cursor"),
    ("unknown parameter", "/jobs?foo=bar", "foo"),
    ("misspelt parameter", "/jobs?states=PENDING", "states"),
    ("job id not a number", "/jobs/abc", "job_id"),
    ("job id zero", "/jobs/0", "job_id"),
    ("job id beyond bigint", "/jobs/99999999999999999999", "job_id"),
]


@pytest.mark.parametrize(
    ("url", "field"),
    [case[1:] for case in QUERY_CASES],
    ids=[case[0] for case in QUERY_CASES],
)
async def test_queries_reject_bad_parameters(
    client: Client, url: str, field: str
) -> None:
    response = await client.get(url)

    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert response.json()["detail"].startswith(f"{field}: ")


async def test_header_and_body_keys_must_match(client: Client) -> None:
    response = await client.post(
        "/jobs",
        json={"task": "echo", "idempotency_key": "a"},
        headers={"Idempotency-Key": "b"},
    )

    assert response.status_code == 422
    assert response.json()["field"] == "idempotency_key"
    assert "header" in response.json()["detail"]


async def test_batch_rejects_idempotency_key_header(client: Client) -> None:
    response = await client.post(
        "/jobs/batch",
        json={"jobs": [{"task": "echo"}]},
        headers={"Idempotency-Key": "a"},
    )

    assert response.status_code == 422
    assert response.json()["field"] == "Idempotency-Key"
    assert "idempotency_key" in response.json()["detail"]
    assert (await client.get("/jobs")).json()["items"] == []


async def test_unknown_task_rejected_when_tasks_loaded(checked_client: Client) -> None:
    response = await checked_client.post("/jobs", json={"task": "no_such_task"})

    assert response.status_code == 422
    assert response.json()["field"] == "task"
    assert "echo" in response.json()["detail"]


async def test_unknown_task_in_batch_names_item(checked_client: Client) -> None:
    response = await checked_client.post(
        "/jobs/batch", json={"jobs": [{"task": "echo"}, {"task": "nope"}]}
    )

    assert response.status_code == 422
    assert response.json()["field"] == "jobs[1].task"


async def test_unknown_task_accepted_without_modules(client: Client) -> None:
    response = await client.post("/jobs", json={"task": "defined.elsewhere"})

    assert response.status_code == 201


async def test_missing_job_is_404(client: Client) -> None:
    response = await client.get("/jobs/999")

    assert response.status_code == 404
    assert response.json()["job_id"] == 999
    assert "999" in response.json()["detail"]


async def test_unknown_route_is_json_404(client: Client) -> None:
    response = await client.get("/nothing/here")

    assert response.status_code == 404
    assert response.json()["status_code"] == 404


# Happy paths


async def test_submit_returns_created_job(client: Client) -> None:
    response = await client.post(
        "/jobs",
        json={
            "task": "echo",
            "payload": {"to": "ada@example.com", "n": [1, 2]},
            "queue": "mail",
            "priority": 7,
            "max_attempts": 3,
        },
    )

    assert response.status_code == 201
    job = response.json()
    assert job["task"] == "echo"
    assert job["payload"] == {"to": "ada@example.com", "n": [1, 2]}
    assert job["queue"] == "mail"
    assert job["priority"] == 7
    assert job["max_attempts"] == 3
    assert job["state"] == "PENDING"
    assert job["attempt"] == 0
    assert job["attempts"] == []
    assert response.headers["location"] == f"/jobs/{job['job_id']}"


async def test_escaped_backslash_is_not_nul(client: Client) -> None:
    response = await client.post(
        "/jobs", content=b'{"task": "echo", "payload": "C:\\\\u0000"}'
    )

    assert response.status_code == 201, response.text
    assert response.json()["payload"] == "C:\\u0000"


async def test_submit_defaults(client: Client) -> None:
    response = await client.post("/jobs", json={"task": "echo"})

    job = response.json()
    assert job["queue"] == "default"
    assert job["priority"] == 0
    assert job["payload"] is None
    assert job["max_attempts"] == 5
    assert job["idempotency_key"] is None


async def test_delay_sets_run_at_later(client: Client) -> None:
    now = (await client.post("/jobs", json={"task": "echo"})).json()
    later = (await client.post("/jobs", json={"task": "echo", "delay": 60})).json()

    assert later["run_at"] > now["run_at"]


async def test_run_at_keeps_given_time(client: Client) -> None:
    local = timezone(timedelta(hours=2))
    run_at = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    response = await client.post(
        "/jobs", json={"task": "echo", "run_at": run_at.astimezone(local).isoformat()}
    )

    assert response.status_code == 201
    assert response.json()["run_at"].startswith(run_at.strftime("%Y-%m-%dT%H:%M:%S"))


async def test_run_at_in_the_past_is_due_now(client: Client) -> None:
    response = await client.post(
        "/jobs", json={"task": "echo", "run_at": "2001-01-01T00:00:00Z"}
    )

    assert response.status_code == 201


async def test_repeat_with_same_key_returns_200(client: Client) -> None:
    body = {"task": "echo", "payload": 1, "idempotency_key": "order-42"}
    first = await client.post("/jobs", json=body)

    second = await client.post("/jobs", json=body)

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json()["job_id"] == first.json()["job_id"]


async def test_conflicting_repeat_returns_409(client: Client) -> None:
    first = await client.post(
        "/jobs", json={"task": "echo", "payload": 1, "idempotency_key": "order-43"}
    )

    second = await client.post(
        "/jobs", json={"task": "echo", "payload": 2, "idempotency_key": "order-43"}
    )

    assert second.status_code == 409
    error = second.json()
    assert error["field"] == "idempotency_key"
    assert error["job_id"] == first.json()["job_id"]
    assert "different request" in error["detail"]


async def test_header_key_makes_submit_idempotent(client: Client) -> None:
    headers = {"Idempotency-Key": "from-header"}
    first = await client.post("/jobs", json={"task": "echo"}, headers=headers)

    again = await client.post("/jobs", json={"task": "echo"}, headers=headers)
    by_body = await client.post(
        "/jobs", json={"task": "echo", "idempotency_key": "from-header"}
    )

    assert first.status_code == 201
    assert first.json()["idempotency_key"] == "from-header"
    assert again.status_code == 200
    assert by_body.status_code == 200
    assert by_body.json()["job_id"] == first.json()["job_id"]


async def test_task_defaults_apply_when_known(checked_client: Client) -> None:
    from conveyor.entrypoints.tasks import default_registry

    spec = default_registry.get("echo")
    assert spec is not None

    response = await checked_client.post("/jobs", json={"task": "echo"})

    assert response.json()["queue"] == spec.queue


async def test_batch_reports_each_item(client: Client) -> None:
    body = {
        "jobs": [
            {"task": "echo", "payload": 1, "idempotency_key": "b-1"},
            {"task": "echo", "payload": 2},
            {"task": "sleep", "payload": {"seconds": 1}, "queue": "slow"},
        ]
    }
    first = await client.post("/jobs/batch", json=body)

    repeat = await client.post("/jobs/batch", json={"jobs": [body["jobs"][0]]})

    assert first.status_code == 201
    items = first.json()["jobs"]
    assert [item["status"] for item in items] == [201, 201, 201]
    assert len({item["job_id"] for item in items}) == 3
    assert repeat.status_code == 200
    assert repeat.json()["jobs"] == [{"job_id": items[0]["job_id"], "status": 200}]


async def test_batch_conflicting_key_is_409(client: Client) -> None:
    await client.post("/jobs", json={"task": "echo", "idempotency_key": "c-1"})

    response = await client.post(
        "/jobs/batch",
        json={"jobs": [{"task": "other", "idempotency_key": "c-1"}]},
    )

    assert response.status_code == 409
    assert "c-1" in response.json()["detail"]


async def test_batch_accepts_max_items(client: Client) -> None:
    response = await client.post(
        "/jobs/batch",
        json={"jobs": [{"task": "echo", "payload": i} for i in range(10_000)]},
    )

    assert response.status_code == 201
    assert len(response.json()["jobs"]) == 10_000


async def test_get_job_shows_attempts(client: Client, container: Container) -> None:
    job_id = (await client.post("/jobs", json={"task": "echo"})).json()["job_id"]
    execute = await resolve_as(container.execute_jobs, ExecuteJobs)
    [claimed] = await execute.claim(WorkerId("worker-a"), ["default"], 1)

    response = await client.get(f"/jobs/{job_id}")

    job = response.json()
    assert response.status_code == 200
    assert job["state"] == "IN_PROGRESS"
    assert job["worker_id"] == "worker-a"
    assert job["lease_expires_at"] is not None
    assert job["attempt"] == 1
    assert job["attempts"][0]["attempt"] == 1
    assert job["attempts"][0]["worker_id"] == "worker-a"
    assert claimed.id == job_id


async def test_list_pages_with_cursor(client: Client) -> None:
    ids = [
        (await client.post("/jobs", json={"task": "echo", "payload": i})).json()[
            "job_id"
        ]
        for i in range(5)
    ]

    seen: list[int] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/jobs", params=params)).json()
        seen.extend(item["job_id"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == sorted(ids, reverse=True)
    assert pages == 3


async def test_list_filters_by_state_queue_task(client: Client) -> None:
    await client.post("/jobs", json={"task": "echo", "queue": "a"})
    await client.post("/jobs", json={"task": "sleep", "queue": "b"})
    cancelled = (await client.post("/jobs", json={"task": "echo", "queue": "c"})).json()
    await client.post(f"/jobs/{cancelled['job_id']}/cancel")

    by_queue = (await client.get("/jobs?queue=a&queue=b")).json()["items"]
    by_task = (await client.get("/jobs?task=sleep")).json()["items"]
    by_state = (await client.get("/jobs?state=pending,CANCELLED")).json()["items"]
    cancelled_only = (await client.get("/jobs?state=CANCELLED")).json()["items"]

    assert {job["queue"] for job in by_queue} == {"a", "b"}
    assert [job["task"] for job in by_task] == ["sleep"]
    assert len(by_state) == 3
    assert [job["job_id"] for job in cancelled_only] == [cancelled["job_id"]]
    assert "attempts" not in cancelled_only[0]


async def test_cancel_then_requeue(client: Client) -> None:
    job_id = (await client.post("/jobs", json={"task": "echo"})).json()["job_id"]

    cancelled = await client.post(f"/jobs/{job_id}/cancel")
    again = await client.post(f"/jobs/{job_id}/cancel")
    requeued = await client.post(f"/jobs/{job_id}/requeue")

    assert cancelled.status_code == 200
    assert cancelled.json()["state"] == "CANCELLED"
    assert again.status_code == 409
    assert again.json()["job_id"] == job_id
    assert "CANCELLED" in again.json()["detail"]
    assert requeued.status_code == 200
    assert requeued.json()["state"] == "PENDING"


async def test_requeue_pending_job_is_409(client: Client) -> None:
    job_id = (await client.post("/jobs", json={"task": "echo"})).json()["job_id"]

    response = await client.post(f"/jobs/{job_id}/requeue")

    assert response.status_code == 409


async def test_cancel_missing_job_is_404(client: Client) -> None:
    response = await client.post("/jobs/12345/cancel")

    assert response.status_code == 404


async def test_queues_count_each_state(client: Client) -> None:
    await client.post("/jobs", json={"task": "echo"})
    await client.post("/jobs", json={"task": "echo"})
    job_id = (await client.post("/jobs", json={"task": "echo", "queue": "b"})).json()[
        "job_id"
    ]
    await client.post(f"/jobs/{job_id}/cancel")

    response = await client.get("/queues")

    queues = {entry["queue"]: entry["counts"] for entry in response.json()["queues"]}
    assert queues["default"]["PENDING"] == 2
    assert queues["default"]["DEAD"] == 0
    assert queues["b"]["CANCELLED"] == 1
    assert set(queues["b"]) == {
        "PENDING",
        "IN_PROGRESS",
        "COMPLETED",
        "FAILED",
        "DEAD",
        "CANCELLED",
    }


async def test_health_and_ready(client: Client) -> None:
    health = await client.get("/health")
    ready = await client.get("/ready")

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready"}


async def test_openapi_schema_lists_endpoints(client: Client) -> None:
    response = await client.get("/schema/openapi.json")

    schema = response.json()
    assert response.status_code == 200
    for path in ("/jobs", "/jobs/batch", "/jobs/{job_id}", "/queues", "/health"):
        assert path in schema["paths"]
    body = schema["paths"]["/jobs"]["post"]["requestBody"]
    assert body["required"] is True


# (path, method, status codes the schema must list)
DOCUMENTED_STATUSES: list[tuple[str, str, set[str]]] = [
    ("/jobs", "post", {"200", "201", "400", "409", "413", "422", "503"}),
    ("/jobs", "get", {"200", "422", "503"}),
    ("/jobs/batch", "post", {"200", "201", "400", "409", "413", "422", "503"}),
    ("/jobs/{job_id}", "get", {"200", "404", "422", "503"}),
    ("/jobs/{job_id}/cancel", "post", {"200", "404", "409", "422", "503"}),
    ("/jobs/{job_id}/requeue", "post", {"200", "404", "409", "422", "503"}),
    ("/queues", "get", {"200", "503"}),
    ("/ready", "get", {"200", "503"}),
]


async def test_openapi_schema_lists_status_codes(client: Client) -> None:
    paths = (await client.get("/schema/openapi.json")).json()["paths"]

    for path, method, statuses in DOCUMENTED_STATUSES:
        listed = set(paths[path][method]["responses"])
        assert statuses <= listed, (path, method, statuses - listed)
    problem = paths["/jobs"]["post"]["responses"]["422"]["content"]
    assert problem["application/json"]["schema"]["$ref"].endswith("/ProblemOut")
