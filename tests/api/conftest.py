"""Fixtures for the API tests: a real SQLite journal, a real in-process bus, and clients."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from api.app import create_app
from store.bus import InProcessBus
from store.journal import Journal

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]


class _LiveBody(httpx.AsyncByteStream):
    """Body chunks as the app sends them; closing it tells the app the client left."""

    def __init__(
        self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None], left: asyncio.Event
    ) -> None:
        self._chunks = chunks
        self._task = task
        self._left = left

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            chunk = await self._chunks.get()
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        self._left.set()
        try:
            await asyncio.wait_for(self._task, timeout=5)
        except TimeoutError:  # the app ignored the disconnect: stop it
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """Like httpx.ASGITransport, but hands body chunks over as they are sent.

    httpx's own transport waits for the whole body, which never ends for an SSE stream.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for (k, v) in request.headers.raw],
            "scheme": request.url.scheme,
            "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query,
            "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 123),
            "root_path": "",
        }
        request_sent = False
        left = asyncio.Event()
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        started: asyncio.Future[tuple[int, list[tuple[bytes, bytes]]]] = (
            asyncio.get_running_loop().create_future()
        )

        async def receive() -> Message:
            nonlocal request_sent
            if not request_sent:
                request_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await left.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set_result((message["status"], list(message.get("headers", []))))
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    chunks.put_nowait(message["body"])
                if not message.get("more_body", False):
                    chunks.put_nowait(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                chunks.put_nowait(None)

        task = asyncio.create_task(run())
        waiting: set[asyncio.Future[Any]] = {started, task}
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        if started not in done:
            task.result()  # raises the app's error
            raise RuntimeError("the app returned without starting a response")
        status, headers = started.result()
        return httpx.Response(status, headers=headers, stream=_LiveBody(chunks, task, left))


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    opened = Journal.open(f"sqlite:///{tmp_path / 'j.db'}")
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def bus() -> InProcessBus:
    return InProcessBus()


@pytest.fixture
def app(journal: Journal, bus: InProcessBus) -> FastAPI:
    return create_app(journal=journal, bus=bus)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        yield http


def streaming_client_for(app: FastAPI) -> httpx.AsyncClient:
    """Return a client whose responses stream as the app sends them (for SSE)."""
    return httpx.AsyncClient(transport=StreamingASGITransport(app), base_url="http://test")


@pytest.fixture
async def streaming_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with streaming_client_for(app) as http:
        yield http


@pytest.fixture
def make_streaming_client() -> Callable[[FastAPI], httpx.AsyncClient]:
    """Return a factory of streaming clients, for apps built inside a test."""
    return streaming_client_for
