"""A small HTTP/1.1 load generator for loopback servers.

Each client holds one keep-alive connection and sends the same prebuilt
request again as soon as the previous response has been read, for a fixed
time. It parses only the status line, Content-Length and chunked bodies,
so the client side costs far less CPU than a general client (httpx) would
on a machine where it shares two cores with the server and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    # Seconds per request, one entry per response read.
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def count(self, status: int) -> int:
        return self.statuses[status]


def build_request(host: str, port: int, method: str, path: str, body: bytes) -> bytes:
    head = (
        f"{method} {path} HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        "\r\n"
    )
    return head.encode() + body


# How long request_status waits for its response.
REQUEST_TIMEOUT_SECONDS = 2.0


async def run_load(
    host: str, port: int, request: bytes, clients: int, seconds: float
) -> LoadResult:
    """Send `request` from `clients` connections for `seconds`; count responses."""
    result = LoadResult(seconds)
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(
        *(_client(host, port, request, deadline, result) for _ in range(clients))
    )
    result.seconds = time.perf_counter() - started
    return result


async def request_status(host: str, port: int, request: bytes) -> int:
    """Send `request` once on a new connection and return the response status.

    Raises OSError when nothing listens yet, TimeoutError when no response
    arrives within REQUEST_TIMEOUT_SECONDS.
    """
    async with asyncio.timeout(REQUEST_TIMEOUT_SECONDS):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)
            return await _read_response(reader)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _client(
    host: str, port: int, request: bytes, deadline: float, result: LoadResult
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            result.latencies.append(time.perf_counter() - sent)
            result.statuses[status] += 1
    except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
        result.errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except ConnectionError:
            pass


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])

    length = None
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value.strip())
        elif name == "transfer-encoding" and "chunked" in value.lower():
            chunked = True

    if chunked:
        await _skip_chunks(reader)
    elif length:
        await reader.readexactly(length)
    return status


async def _skip_chunks(reader: asyncio.StreamReader) -> None:
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return
