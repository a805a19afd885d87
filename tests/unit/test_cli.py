"""The `conveyor` command line: errors are one clear line, clients talk HTTP."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import uvicorn
from click.testing import CliRunner

from conveyor.entrypoints.api import create_app
from conveyor.entrypoints.cli import main
from conveyor.entrypoints.config import Settings
from conveyor.entrypoints.container import build_container


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.delenv("CONVEYOR_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_API_URL", raising=False)
    monkeypatch.delenv("CONVEYOR_STORE", raising=False)
    return CliRunner()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    """A real uvicorn server on loopback, serving the API on the memory store."""
    port = free_port()
    app = create_app(build_container(Settings(store="memory", port=port)))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    for _ in range(200):
        if server.started:
            started.set()
            break
        started.wait(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_help_lists_commands(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--help"])

    assert result.exit_code == 0
    for command in ("api", "worker", "migrate", "submit", "show", "list", "dev"):
        assert command in result.output


@pytest.mark.parametrize("command", ["api", "worker", "migrate"])
def test_server_commands_need_database_url(runner: CliRunner, command: str) -> None:
    result = runner.invoke(main, [command])

    assert result.exit_code == 1
    assert "CONVEYOR_DATABASE_URL" in result.output
    assert "conveyor dev" in result.output


def test_bad_setting_is_one_line(runner: CliRunner) -> None:
    result = runner.invoke(main, ["api"], env={"CONVEYOR_PORT": "http"})

    assert result.exit_code == 1
    assert result.output.strip() == "Error: CONVEYOR_PORT='http' is not an integer"


def test_worker_rejects_memory_store(runner: CliRunner) -> None:
    result = runner.invoke(main, ["worker"], env={"CONVEYOR_STORE": "memory"})

    assert result.exit_code == 1
    assert "postgres store" in result.output


def test_submit_rejects_bad_payload_json(runner: CliRunner) -> None:
    result = runner.invoke(main, ["submit", "echo", "--payload", "{oops"])

    assert result.exit_code == 2
    assert "--payload" in result.output


@pytest.mark.parametrize("payload", ["NaN", "-Infinity", '"\\ud800"'])
def test_submit_rejects_payload_json_lacks(runner: CliRunner, payload: str) -> None:
    result = runner.invoke(main, ["submit", "echo", "--payload", payload])

    assert result.exit_code == 2
    assert "--payload" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_unreachable_api_is_clear(runner: CliRunner) -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = runner.invoke(main, ["show", "1", "--api-url", url])

    assert result.exit_code == 1
    assert f"cannot reach the conveyor API at {url}" in result.output


def test_submit_show_list(runner: CliRunner, api_url: str) -> None:
    submitted = runner.invoke(
        main,
        [
            "submit",
            "echo",
            "--payload",
            '{"n": 1}',
            "--queue",
            "cli",
            "--api-url",
            api_url,
        ],
    )
    job = json.loads(submitted.output)

    shown = runner.invoke(main, ["show", str(job["job_id"]), "--api-url", api_url])
    listed = runner.invoke(main, ["list", "--queue", "cli", "--api-url", api_url])

    assert submitted.exit_code == 0, submitted.output
    assert job["payload"] == {"n": 1}
    assert shown.exit_code == 0
    assert json.loads(shown.output)["job_id"] == job["job_id"]
    assert listed.exit_code == 0
    assert f"{job['job_id']}  PENDING" in listed.output


def test_repeat_key_reports_existing_job(runner: CliRunner, api_url: str) -> None:
    args = ["submit", "echo", "--key", "cli-key", "--api-url", api_url]
    first = runner.invoke(main, args)

    again = runner.invoke(main, args)
    conflict = runner.invoke(main, [*args, "--payload", "2"])

    assert first.exit_code == 0
    assert again.exit_code == 0
    assert "existing job" in again.output
    assert conflict.exit_code == 1
    assert "different request" in conflict.output


def test_api_error_is_one_line(runner: CliRunner, api_url: str) -> None:
    result = runner.invoke(
        main, ["submit", "echo", "--priority", "99999", "--api-url", api_url]
    )

    assert result.exit_code == 1
    assert result.output.startswith("Error: priority: ")
    assert result.output.count("\n") == 1


def test_list_rejects_unknown_state(runner: CliRunner, api_url: str) -> None:
    result = runner.invoke(main, ["list", "--state", "LOST", "--api-url", api_url])

    assert result.exit_code == 1
    assert "state: 'LOST' is not a job state" in result.output
