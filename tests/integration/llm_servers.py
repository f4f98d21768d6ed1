"""Local Groq- and Ollama-compatible servers for driving the real LLM clients in tests.

Each server runs a Starlette app under uvicorn in a background thread on 127.0.0.1 with an
ephemeral port. Tests script its replies, then assert on what the real client did and on what
the server received:

    with GroqServer() as groq:
        groq.script(Text("BUY"), HttpError(429, headers={"Retry-After": "1"}))
        llm = ChatGroq(model="llama-3.1-8b-instant", api_key="test", base_url=groq.base_url)
        ...
        assert groq.chat_requests[0].json["model"] == "llama-3.1-8b-instant"

Scripted replies are consumed one per chat request; when the queue is empty the server asks
its `default` factory (a callable receiving the parsed request JSON and returning a reply).
A scripted entry may itself be such a callable, to answer from the request.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar, Self

import uvicorn
from loopback import start_in_thread
from ollama_format import ollama_format_refusal
from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

# --------------------------------------------------------------------------------------------
# Reply kinds
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Text:
    """A normal answer; `think` is reasoning text, sent as `<think>...</think>` before it.

    Token counts default to a word count of the prompt and the number of content chunks.
    """

    content: str
    think: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


@dataclass(frozen=True)
class ToolCall:
    """A tool call; `arguments` go out as a JSON string (Groq) or a JSON object (Ollama)."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class HttpError:
    """An HTTP error reply; `body` defaults to the protocol's own error JSON."""

    status: int
    body: str | bytes | Mapping[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Delay:
    """Wait `seconds` before answering with `then` (the default reply when None)."""

    seconds: float
    then: Reply | None = None


@dataclass(frozen=True)
class Truncated:
    """A reply that stops mid-way: some content chunks, no `[DONE]` / no `"done": true` line.

    `cut_connection=True` drops the connection without ending the HTTP body (a crash or a
    network drop); `False` ends the body cleanly, just without the protocol's terminator.
    A non-streaming request gets the first half of the JSON body.
    """

    content: str
    cut_connection: bool = True


@dataclass(frozen=True)
class Garbage:
    """A 200 reply whose body is `raw` bytes, under the content type the client expects."""

    raw: bytes
    status: int = 200
    content_type: str | None = None


@dataclass(frozen=True)
class Endless:
    """A model stuck in a loop: `piece` streamed again and again, never a finish line.

    Ollama stops it at the request's `options.num_predict` (one piece is one token), as a real
    Ollama does, unless `ignore_num_predict`; then only the client's timeout, a reset or the
    server stopping ends it (or `max_seconds`, a safety bound for the test run).
    """

    piece: str = "and the trend continues "
    prefix: str = '{"verdict": "buy", "confidence": 0.7, "reasoning": "'
    ignore_num_predict: bool = False
    max_seconds: float = 60.0


Reply = Text | ToolCall | HttpError | Delay | Truncated | Garbage | Endless
RequestJson = Any
ReplyFactory = Callable[[RequestJson], Reply]


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    json: Any
    received_at: float


def split_into_chunks(content: str) -> list[str]:
    """Split text word by word, whitespace kept with the word before it; joins back exactly."""
    if not content:
        return []
    return re.split(r"(?<=\s)(?=\S)", content)


def _prompt_word_count(request_json: Any) -> int:
    words = 0
    for message in (request_json or {}).get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(
                str(part.get("text", "")) for part in content if isinstance(part, dict)
            )
        words += len(str(content or "").split())
    return max(words, 1)


def _error_body(body: str | bytes | Mapping[str, Any]) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class _Sender:
    """Raw ASGI replies, so a stream can end without completing the HTTP body."""

    def __init__(self, send: Send) -> None:
        self._send = send

    async def start(self, status: int, content_type: str, headers: Mapping[str, str]) -> None:
        raw_headers = [(b"content-type", content_type.encode())]
        raw_headers += [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw_headers})

    async def part(self, body: bytes) -> None:
        await self._send({"type": "http.response.body", "body": body, "more_body": True})

    async def end(self) -> None:
        await self._send({"type": "http.response.body", "body": b"", "more_body": False})

    async def whole(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        all_headers = {"content-length": str(len(body)), **(headers or {})}
        await self.start(status, content_type, all_headers)
        await self._send({"type": "http.response.body", "body": body, "more_body": False})

    async def json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        await self.whole(status, json.dumps(payload).encode(), headers=headers)

    async def truncated_whole(self, body: bytes, content_type: str, cut_connection: bool) -> None:
        """Send the first half of `body`; either announce the full length and drop, or not."""
        half = body[: len(body) // 2]
        if cut_connection:
            await self.start(200, content_type, {"content-length": str(len(body))})
            await self.part(half)  # returning now makes uvicorn close the connection
        else:
            await self.whole(200, half, content_type)


class _AsgiEndpoint:
    def __init__(self, app: Callable[[Scope, Receive, Send], Any]) -> None:
        self._app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)


# --------------------------------------------------------------------------------------------
# Server base
# --------------------------------------------------------------------------------------------


Handler = Callable[[RecordedRequest, _Sender], Any]


class LLMServer:
    """Base: a uvicorn thread, a reply script, and a record of every request."""

    chat_path: ClassVar[str]
    name: ClassVar[str] = "llm"

    def __init__(self, default: ReplyFactory | None = None) -> None:
        self._initial_default: ReplyFactory = default or (lambda _request_json: Text("OK"))
        self.default: ReplyFactory = self._initial_default
        self.requests: list[RecordedRequest] = []
        self._script: deque[Reply | ReplyFactory] = deque()
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port: int | None = None
        self._closing = False
        self._generation = 0  # bumped by reset(), so a Delay from an earlier test is dropped
        self.app = Starlette(
            routes=[
                # An object (not a function) as endpoint: Starlette calls it as a raw ASGI app.
                Route("/{path:path}", endpoint=_AsgiEndpoint(self._asgi))
            ]
        )

    # -- scripting and inspection ---------------------------------------------------------

    def script(self, *replies: Reply | ReplyFactory) -> None:
        """Queue replies, consumed one per chat request, before the default factory."""
        with self._lock:
            self._script.extend(replies)

    @property
    def pending(self) -> int:
        """How many scripted replies are still unused."""
        with self._lock:
            return len(self._script)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The requests made to the chat endpoint."""
        return [r for r in list(self.requests) if r.path == self.chat_path]

    def reset(self) -> None:
        """Forget the script, the recorded requests and any default set after start-up."""
        with self._lock:
            self._script.clear()
            self.requests.clear()
            self.default = self._initial_default
            self._generation += 1

    def next_reply(self, request_json: Any) -> Reply:
        with self._lock:
            scripted = self._script.popleft() if self._script else None
        if scripted is None:
            return self.default(request_json)
        if callable(scripted):
            return scripted(request_json)
        return scripted

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        self._closing = False
        self._server, self._thread, self.port = start_in_thread(self.app, f"{self.name}-server")
        return self

    def stop(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.should_exit = True
            self._server.force_exit = True  # do not wait for Delay replies still sleeping
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- request handling -----------------------------------------------------------------

    def routes(self) -> dict[tuple[str, str], Handler]:
        raise NotImplementedError

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        recorded = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=scope.get("query_string", b"").decode(),
            headers={k.decode().lower(): v.decode() for k, v in scope["headers"]},
            body=body,
            json=parsed,
            received_at=time.monotonic(),
        )
        self.requests.append(recorded)
        sender = _Sender(send)
        handler = self.routes().get((recorded.method, recorded.path))
        if handler is None:
            await sender.json(404, {"error": f"no route {recorded.method} {recorded.path}"})
            return
        await handler(recorded, sender)

    async def _chat(self, request: RecordedRequest, sender: _Sender) -> None:
        request_json = request.json if isinstance(request.json, dict) else {}
        reply = self.next_reply(request_json)
        while isinstance(reply, Delay):
            if not await self._sleep_unless_stopped(reply.seconds):
                return  # the server is stopping or was reset: drop the reply
            reply = reply.then if reply.then is not None else self.default(request_json)
        if isinstance(reply, HttpError):
            body = _error_body(
                reply.body if reply.body is not None else self.error_body(reply.status)
            )
            await sender.whole(reply.status, body, headers=reply.headers)
            return
        streaming = self.is_streaming(request_json)
        if isinstance(reply, Garbage):
            content_type = reply.content_type or self.content_type(streaming)
            await sender.whole(reply.status, reply.raw, content_type)
            return
        if isinstance(reply, Endless):
            await self.endless(request_json, reply, sender)
            return
        await self.answer(request_json, reply, streaming, sender)

    async def endless(self, request_json: dict[str, Any], reply: Endless, sender: _Sender) -> None:
        """Answer with a loop that never finishes by itself (Groq: never answers at all)."""
        await self._sleep_unless_stopped(reply.max_seconds)

    async def _sleep_unless_stopped(self, seconds: float) -> bool:
        """Sleep; return False early when the server stops or is reset meanwhile."""
        generation = self._generation
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._closing or self._generation != generation:
                return False
            await asyncio.sleep(min(remaining, 0.02))
        return not self._closing and self._generation == generation

    # -- protocol hooks -------------------------------------------------------------------

    def is_streaming(self, request_json: dict[str, Any]) -> bool:
        raise NotImplementedError

    def content_type(self, streaming: bool) -> str:
        raise NotImplementedError

    def error_body(self, status: int) -> Mapping[str, Any]:
        raise NotImplementedError

    async def answer(
        self,
        request_json: dict[str, Any],
        reply: Text | ToolCall | Truncated,
        streaming: bool,
        sender: _Sender,
    ) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------------------------
# Groq (OpenAI chat completions under /openai/v1)
# --------------------------------------------------------------------------------------------

_GROQ_ERROR_TYPES = {
    400: ("invalid_request_error", "bad_request"),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    413: ("tokens", "request_too_large"),
    429: ("tokens", "rate_limit_exceeded"),
    498: ("invalid_request_error", "flex_tier_capacity_exceeded"),
    500: ("internal_server_error", "internal_server_error"),
    503: ("internal_server_error", "service_unavailable"),
}


class GroqServer(LLMServer):
    """`POST /openai/v1/chat/completions` (JSON, or SSE ending in `data: [DONE]`)."""

    chat_path = "/openai/v1/chat/completions"
    name = "groq"

    def __init__(
        self,
        default: ReplyFactory | None = None,
        models: Iterable[str] = ("llama-3.1-8b-instant", "llama-3.3-70b-versatile"),
        api_key: str | None = None,
    ) -> None:
        """`api_key`, when given, is required as `Authorization: Bearer <key>` (else 401)."""
        super().__init__(default)
        self.models = list(models)
        self.api_key = api_key

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", self.chat_path): self._chat,
            ("GET", "/openai/v1/models"): self._models,
        }

    async def _chat(self, request: RecordedRequest, sender: _Sender) -> None:
        expected = f"Bearer {self.api_key}"
        if self.api_key is not None and request.headers.get("authorization") != expected:
            await sender.json(401, self.error_body(401))
            return
        await super()._chat(request, sender)

    async def _models(self, request: RecordedRequest, sender: _Sender) -> None:
        created = int(time.time())
        data = [
            {
                "id": model,
                "object": "model",
                "created": created,
                "owned_by": "Meta",
                "active": True,
                "context_window": 131072,
            }
            for model in self.models
        ]
        await sender.json(200, {"object": "list", "data": data})

    def is_streaming(self, request_json: dict[str, Any]) -> bool:
        return bool(request_json.get("stream"))

    def content_type(self, streaming: bool) -> str:
        return "text/event-stream" if streaming else "application/json"

    def error_body(self, status: int) -> Mapping[str, Any]:
        error_type, code = _GROQ_ERROR_TYPES.get(status, ("api_error", "error"))
        message = f"scripted error {status}"
        if status == 429:
            message = "Rate limit reached for model. Please try again in 1s."
        return {"error": {"message": message, "type": error_type, "code": code}}

    @staticmethod
    def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "queue_time": 0.01,
            "prompt_tokens": prompt_tokens,
            "prompt_time": 0.002,
            "completion_tokens": completion_tokens,
            "completion_time": 0.02,
            "total_tokens": prompt_tokens + completion_tokens,
            "total_time": 0.022,
        }

    @staticmethod
    def _tool_call_json(reply: ToolCall) -> dict[str, Any]:
        return {
            "id": reply.id or f"call_{uuid.uuid4().hex[:24]}",
            "type": "function",
            "function": {"name": reply.name, "arguments": json.dumps(reply.arguments)},
        }

    def _text_parts(self, request_json: dict[str, Any], reply: Text) -> tuple[str, str | None]:
        """Return (content, reasoning) as Groq sends them for the request's reasoning_format."""
        if reply.think is None:
            return reply.content, None
        reasoning_format = request_json.get("reasoning_format")
        if reasoning_format == "parsed":
            return reply.content, reply.think
        if reasoning_format == "hidden":
            return reply.content, None
        return f"<think>\n{reply.think}\n</think>\n\n{reply.content}", None

    async def answer(
        self,
        request_json: dict[str, Any],
        reply: Text | ToolCall | Truncated,
        streaming: bool,
        sender: _Sender,
    ) -> None:
        model = request_json.get("model") or "llama-3.1-8b-instant"
        completion_id = f"chatcmpl-{uuid.uuid4()}"
        created = int(time.time())
        request_id = f"req_{uuid.uuid4().hex[:26]}"
        prompt_tokens = _prompt_word_count(request_json)

        content: str | None
        reasoning: str | None = None
        tool_calls: list[dict[str, Any]] | None = None
        if isinstance(reply, ToolCall):
            content, tool_calls, finish_reason = None, [self._tool_call_json(reply)], "tool_calls"
            completion_tokens = max(len(json.dumps(reply.arguments).split()), 1)
        elif isinstance(reply, Text):
            content, reasoning = self._text_parts(request_json, reply)
            finish_reason = "stop"
            completion_tokens = reply.completion_tokens or max(len(split_into_chunks(content)), 1)
            prompt_tokens = reply.prompt_tokens or prompt_tokens
        else:  # Truncated
            content, finish_reason = reply.content, "stop"
            completion_tokens = max(len(split_into_chunks(content)), 1)
        usage = self._usage(prompt_tokens, completion_tokens)

        if not streaming:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if reasoning is not None:
                message["reasoning"] = reasoning
            if tool_calls is not None:
                message["tool_calls"] = tool_calls
            completion = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish_reason,
                    }
                ],
                "usage": usage,
                "usage_breakdown": None,
                "system_fingerprint": "fp_local",
                "x_groq": {"id": request_id},
                "service_tier": "on_demand",
            }
            body = json.dumps(completion).encode()
            if isinstance(reply, Truncated):
                await sender.truncated_whole(body, "application/json", reply.cut_connection)
            else:
                await sender.whole(200, body)
            return

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
            payload = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": "fp_local",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n".encode()

        await sender.start(200, "text/event-stream", {"cache-control": "no-cache"})
        await sender.part(chunk({"role": "assistant", "content": ""}, x_groq={"id": request_id}))
        if reasoning is not None:
            for piece in split_into_chunks(reasoning):
                await sender.part(chunk({"reasoning": piece}))
        for piece in split_into_chunks(content or ""):
            await sender.part(chunk({"content": piece}))
        if isinstance(reply, Truncated):
            if not reply.cut_connection:
                await sender.end()
            return  # returning without end() makes uvicorn drop the connection
        if tool_calls is not None:
            delta_calls = [{"index": i, **call} for i, call in enumerate(tool_calls)]
            await sender.part(chunk({"tool_calls": delta_calls}))
        await sender.part(chunk({}, finish_reason, x_groq={"id": request_id, "usage": usage}))
        if (request_json.get("stream_options") or {}).get("include_usage"):
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": usage,
            }
            await sender.part(f"data: {json.dumps(payload)}\n\n".encode())
        await sender.part(b"data: [DONE]\n\n")
        await sender.end()


# --------------------------------------------------------------------------------------------
# Ollama (/api/chat, NDJSON stream ending in "done": true)
# --------------------------------------------------------------------------------------------


def _ollama_timestamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class OllamaServer(LLMServer):
    """`POST /api/chat` (NDJSON stream by default; one JSON object when `"stream": false`)."""

    chat_path = "/api/chat"
    name = "ollama"

    def __init__(
        self,
        default: ReplyFactory | None = None,
        models: Iterable[str] = ("qwen2.5:14b", "deepseek-r1:14b"),
        version: str = "0.12.6",
        check_format: bool = True,
    ) -> None:
        """`check_format`: refuse a `format` schema llama.cpp cannot compile, as Ollama does."""
        super().__init__(default)
        self.models = list(models)
        self.version = version
        self.check_format = check_format

    def routes(self) -> dict[tuple[str, str], Handler]:
        return {
            ("POST", self.chat_path): self._chat,
            ("GET", "/"): self._root,
            ("HEAD", "/"): self._root,
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/version"): self._version,
            ("POST", "/api/show"): self._show,
        }

    async def _chat(self, request: RecordedRequest, sender: _Sender) -> None:
        request_json = request.json if isinstance(request.json, dict) else {}
        schema = request_json.get("format")
        if self.check_format and isinstance(schema, dict):
            refusal = ollama_format_refusal(schema)
            if refusal is not None:  # before the model runs: no scripted reply is used
                await sender.json(500, {"error": refusal})
                return
        await super()._chat(request, sender)

    @staticmethod
    def num_predict(request_json: dict[str, Any]) -> int | None:
        """The request's token cap (`options.num_predict`), when it sets a positive one."""
        value = (request_json.get("options") or {}).get("num_predict")
        return value if isinstance(value, int) and value > 0 else None

    async def endless(self, request_json: dict[str, Any], reply: Endless, sender: _Sender) -> None:
        model = request_json.get("model") or "qwen2.5:14b"
        cap = None if reply.ignore_num_predict else self.num_predict(request_json)
        generation = self._generation
        deadline = time.monotonic() + reply.max_seconds

        def line(content: str) -> bytes:
            message = {"role": "assistant", "content": content}
            payload = {"model": model, "created_at": _ollama_timestamp(), "message": message}
            return (json.dumps({**payload, "done": False}) + "\n").encode()

        await sender.start(200, "application/x-ndjson", {})
        await sender.part(line(reply.prefix))
        tokens = 1
        while cap is None or tokens < cap:
            if self._closing or self._generation != generation or time.monotonic() > deadline:
                return  # dropped without a finish line
            await sender.part(line(reply.piece))
            tokens += 1
            await asyncio.sleep(0.001)  # let the client read; this pacing is the server's own
        final = {
            "model": model,
            "created_at": _ollama_timestamp(),
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "length",
            "prompt_eval_count": _prompt_word_count(request_json),
            "eval_count": tokens,
        }
        await sender.part((json.dumps(final) + "\n").encode())
        await sender.end()

    async def _root(self, request: RecordedRequest, sender: _Sender) -> None:
        await sender.whole(200, b"Ollama is running", "text/plain; charset=utf-8")

    async def _version(self, request: RecordedRequest, sender: _Sender) -> None:
        await sender.json(200, {"version": self.version})

    def _details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": "gguf",
            "family": "qwen2",
            "families": ["qwen2"],
            "parameter_size": "14.8B",
            "quantization_level": "Q4_K_M",
        }

    async def _tags(self, request: RecordedRequest, sender: _Sender) -> None:
        models = [
            {
                "name": model,
                "model": model,
                "modified_at": _ollama_timestamp(),
                "size": 8_988_124_069,
                "digest": uuid.uuid5(uuid.NAMESPACE_URL, model).hex * 2,
                "details": self._details(),
            }
            for model in self.models
        ]
        await sender.json(200, {"models": models})

    async def _show(self, request: RecordedRequest, sender: _Sender) -> None:
        model = (request.json or {}).get("model") or (request.json or {}).get("name")
        if model not in self.models:
            await sender.json(404, {"error": f"model '{model}' not found"})
            return
        await sender.json(
            200,
            {
                "modelfile": "",
                "parameters": "",
                "template": "",
                "details": self._details(),
                "model_info": {},
                "capabilities": ["completion", "tools"],
                "modified_at": _ollama_timestamp(),
            },
        )

    def is_streaming(self, request_json: dict[str, Any]) -> bool:
        return request_json.get("stream", True) is not False  # Ollama streams by default

    def content_type(self, streaming: bool) -> str:
        return "application/x-ndjson" if streaming else "application/json; charset=utf-8"

    def error_body(self, status: int) -> Mapping[str, Any]:
        return {"error": f"scripted error {status}"}

    async def answer(
        self,
        request_json: dict[str, Any],
        reply: Text | ToolCall | Truncated,
        streaming: bool,
        sender: _Sender,
    ) -> None:
        model = request_json.get("model") or "qwen2.5:14b"
        prompt_tokens = _prompt_word_count(request_json)
        content = ""
        thinking: str | None = None
        tool_calls: list[dict[str, Any]] | None = None
        if isinstance(reply, ToolCall):
            tool_calls = [{"function": {"name": reply.name, "arguments": reply.arguments}}]
            completion_tokens = max(len(json.dumps(reply.arguments).split()), 1)
        elif isinstance(reply, Text):
            think_flag = request_json.get("think")
            if reply.think is None or think_flag is False:
                content = reply.content
            elif think_flag:
                content, thinking = reply.content, reply.think
            else:
                content = f"<think>\n{reply.think}\n</think>\n\n{reply.content}"
            completion_tokens = reply.completion_tokens or max(len(split_into_chunks(content)), 1)
            prompt_tokens = reply.prompt_tokens or prompt_tokens
        else:  # Truncated
            content = reply.content
            completion_tokens = max(len(split_into_chunks(content)), 1)

        def final(message: dict[str, Any]) -> dict[str, Any]:
            return {
                "model": model,
                "created_at": _ollama_timestamp(),
                "message": message,
                "done": True,
                "done_reason": "stop",
                "total_duration": 1_500_000_000,
                "load_duration": 20_000_000,
                "prompt_eval_count": prompt_tokens,
                "prompt_eval_duration": 100_000_000,
                "eval_count": completion_tokens,
                "eval_duration": 1_300_000_000,
            }

        if not streaming:
            message: dict[str, Any] = {"role": "assistant", "content": content}
            if thinking is not None:
                message["thinking"] = thinking
            if tool_calls is not None:
                message["tool_calls"] = tool_calls
            body = json.dumps(final(message)).encode()
            if isinstance(reply, Truncated):
                await sender.truncated_whole(body, self.content_type(False), reply.cut_connection)
            else:
                await sender.whole(200, body, self.content_type(False))
            return

        def line(message: dict[str, Any]) -> bytes:
            payload = {
                "model": model,
                "created_at": _ollama_timestamp(),
                "message": message,
                "done": False,
            }
            return (json.dumps(payload) + "\n").encode()

        await sender.start(200, "application/x-ndjson", {})
        for piece in split_into_chunks(thinking or ""):
            await sender.part(line({"role": "assistant", "content": "", "thinking": piece}))
        for piece in split_into_chunks(content):
            await sender.part(line({"role": "assistant", "content": piece}))
        if isinstance(reply, Truncated):
            if not reply.cut_connection:
                await sender.end()
            return  # returning without end() makes uvicorn drop the connection
        if tool_calls is not None:
            await sender.part(line({"role": "assistant", "content": "", "tool_calls": tool_calls}))
        await sender.part((json.dumps(final({"role": "assistant", "content": ""})) + "\n").encode())
        await sender.end()
