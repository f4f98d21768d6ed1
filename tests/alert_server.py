"""A local server that records alert posts and answers like Slack webhooks or the Telegram API.

It runs a Starlette app under uvicorn in a background thread on 127.0.0.1 with an ephemeral
port. Replies are scripted per path and consumed one per request; without a script a path
answers its `always` reply, else the service's own success (Telegram for `.../sendMessage`,
Slack's 200 "ok" for anything else):

    with AlertServer() as server:
        server.script("/hooks/slack", Reply(500, "rollup_error"))
        ...
        assert server.posts("/hooks/slack")[0].json["text"].startswith("🚨")
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from loopback import start_in_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


@dataclass(frozen=True)
class Reply:
    """An HTTP reply: a str body goes out as text/plain, anything else as JSON."""

    status: int = 200
    body: str | Mapping[str, Any] = "ok"
    headers: Mapping[str, str] = field(default_factory=dict)


def telegram_ok(message_id: int = 1) -> Reply:
    return Reply(200, {"ok": True, "result": {"message_id": message_id, "date": 0}})


def telegram_error(error_code: int, description: str, *, retry_after: int | None = None) -> Reply:
    body: dict[str, Any] = {"ok": False, "error_code": error_code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return Reply(error_code, body)


@dataclass(frozen=True)
class RecordedPost:
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any


class AlertServer:
    """A recording HTTP server; `reset()` between tests when it is shared."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._scripts: dict[str, deque[Reply]] = defaultdict(deque)
        self._always: dict[str, Reply] = {}
        self._posts: list[RecordedPost] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    # -- scripting and inspection ---------------------------------------------------------

    def script(self, path: str, *replies: Reply) -> None:
        with self._lock:
            self._scripts[path].extend(replies)

    def always(self, path: str, reply: Reply) -> None:
        with self._lock:
            self._always[path] = reply

    def posts(self, path: str | None = None) -> list[RecordedPost]:
        with self._lock:
            return [p for p in self._posts if path is None or p.path == path]

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self._always.clear()
            self._posts.clear()

    def url(self, path: str) -> str:
        if self.port is None:
            raise RuntimeError("AlertServer is not started")
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def base_url(self) -> str:
        return self.url("")

    # -- handling -------------------------------------------------------------------------

    def _next_reply(self, path: str) -> Reply:
        with self._lock:
            script = self._scripts.get(path)
            if script:
                return script.popleft()
            if path in self._always:
                return self._always[path]
        return telegram_ok() if path.endswith("/sendMessage") else Reply()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        path = request.url.path
        with self._lock:
            self._posts.append(
                RecordedPost(path=path, headers=dict(request.headers), body=body, json=parsed)
            )
        reply = self._next_reply(path)
        if isinstance(reply.body, str):
            return Response(
                reply.body, reply.status, headers=dict(reply.headers), media_type="text/plain"
            )
        return Response(
            json.dumps(reply.body),
            reply.status,
            headers=dict(reply.headers),
            media_type="application/json",
        )

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Self:
        self._server, self._thread, self.port = start_in_thread(self.app, "alert-server")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
