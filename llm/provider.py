"""One configured chat model, called with a timeout, retries, a breaker and a cache.

The chat models themselves (`ChatGroq`, `ChatOllama`) are built by the composition root and
handed in as a factory; this module only speaks LangChain's chat-model interface, so it never
imports a provider SDK. Every call is returned as an `LLMCall` (what was sent and what came
back), or raised inside a `ProviderError` that carries it, so a failure is recorded too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel

from graph.review import ReviewAborted
from llm.answers import answer_wire_schema
from llm.cache import ResponseCache, cache_key
from llm.cost import BudgetSpent, CallMeter
from llm.parsing import LLMOutputError
from llm.resilience import CircuitBreaker, is_retryable, retry_after_s
from prompts.loader import RenderedPrompt

ChatFactory = Callable[[dict[str, Any]], Any]  # JSON schema -> a LangChain chat runnable
# Receives the model's text as it streams (the same shape as graph.review.TokenCallback).
TokenCallback = Callable[[str], None]


@dataclass
class LLMCall:
    """What one LLM call sent and got back: recorded in the journal whatever happened."""

    provider: str
    model: str
    prompt_ref: str | None = None
    input_sha256: str | None = None
    system: str = ""
    user: str = ""
    raw: str = ""
    thinking: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_ms: float = 0.0
    attempts: int = 0
    cached: bool = False
    error: str | None = None
    cost_usd: float | None = None  # from the meter's price table; 0 when cached

    def to_json(self) -> dict[str, Any]:
        """Return the call as plain JSON values."""
        return asdict(self)


class CacheMiss(ReviewAborted):
    """Cache-only mode (`--reviewers cache-only`) found no stored answer: nothing is called."""


class ProviderError(RuntimeError):
    """The provider could not answer (after retries, or with the breaker open)."""

    def __init__(self, message: str, call: LLMCall) -> None:
        super().__init__(message)
        self.call = call


@dataclass
class ChatProvider:
    """One configured chat model, called with timeouts, retries, a breaker and a cache."""

    name: str  # "groq" or "ollama"
    model: str
    factory: ChatFactory
    stream: bool = True
    timeout_s: float = 30.0
    max_retries: int = 2
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    cache: ResponseCache | None = None
    meter: CallMeter | None = None  # tokens, money, latency, the daily budget
    offline: bool = False  # cache-only: a miss raises `CacheMiss` instead of calling out
    sleep: Callable[[float], Any] = asyncio.sleep
    _runnables: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def label(self) -> str:
        """How verdicts name this provider: provider:model."""
        return f"{self.name}:{self.model}"

    def _runnable(self, schema: type[BaseModel]) -> Any:
        if schema.__name__ not in self._runnables:
            self._runnables[schema.__name__] = self.factory(answer_wire_schema(schema))
        return self._runnables[schema.__name__]

    async def complete(
        self,
        rendered: RenderedPrompt,
        schema: type[BaseModel],
        on_token: TokenCallback | None = None,
    ) -> LLMCall:
        """Send the rendered prompt; return the call with the raw answer, or raise ProviderError."""
        call = LLMCall(
            provider=self.name,
            model=self.model,
            prompt_ref=rendered.ref,
            input_sha256=rendered.input_sha256,
            system=rendered.system,
            user=rendered.user,
        )
        key = cache_key(self.name, self.model, rendered.ref, rendered.input_sha256)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            call.raw = str(hit.get("raw", ""))
            call.thinking = str(hit.get("thinking", ""))
            call.input_tokens = hit.get("input_tokens")
            call.output_tokens = hit.get("output_tokens")
            call.cached = True
            call.cost_usd = 0.0
            self._count(call)
            if on_token is not None and call.raw:
                on_token(call.raw)
            return call
        if self.offline:
            raise CacheMiss(
                f"{self.label}: no cached answer for prompt {rendered.ref} and input "
                f"{rendered.input_sha256[:12]} (cache-only: nothing is called)"
            )
        if self.meter is not None:
            try:
                self.meter.check()
            except BudgetSpent as exc:
                call.error = str(exc)
                raise ProviderError(str(exc), call) from None
        messages: list[BaseMessage] = [
            SystemMessage(rendered.system),
            HumanMessage(rendered.user),
        ]
        started = time.perf_counter()
        last_error = "not attempted"
        while call.attempts <= self.max_retries:
            if not self.breaker.allow():
                last_error = f"{self.name} circuit breaker open after repeated failures"
                break
            call.attempts += 1
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self._call_once(schema, messages, call, on_token)
            except Exception as exc:
                self.breaker.record_failure()
                last_error = (
                    f"timed out after {self.timeout_s}s"
                    if isinstance(exc, TimeoutError)
                    else f"{type(exc).__name__}: {exc}"
                )
                if not is_retryable(exc) or call.attempts > self.max_retries:
                    break
                delay = retry_after_s(exc)
                if delay is None:
                    delay = self.backoff_s * 2 ** (call.attempts - 1)
                await self.sleep(min(delay, self.max_backoff_s))
                continue
            self.breaker.record_success()
            call.latency_ms = round((time.perf_counter() - started) * 1000, 3)
            self._count(call)
            if self.cache is not None:
                self.cache.put(
                    key,
                    {
                        "raw": call.raw,
                        "thinking": call.thinking,
                        "input_tokens": call.input_tokens,
                        "output_tokens": call.output_tokens,
                        "provider": self.name,
                        "model": self.model,
                        "prompt_ref": rendered.ref,
                    },
                )
            return call
        call.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        call.error = last_error
        self._count(call)
        raise ProviderError(last_error, call)

    def _count(self, call: LLMCall) -> None:
        """Give the call its cost and count it on the meter (if there is one)."""
        if self.meter is None:
            return
        call.cost_usd = self.meter.record(
            self.name,
            self.model,
            input_tokens=call.input_tokens,
            output_tokens=call.output_tokens,
            latency_ms=call.latency_ms,
            cached=call.cached,
            failed=call.error is not None,
        )

    async def _call_once(
        self,
        schema: type[BaseModel],
        messages: list[BaseMessage],
        call: LLMCall,
        on_token: TokenCallback | None,
    ) -> None:
        runnable = self._runnable(schema)
        call.raw, call.thinking = "", ""
        if not self.stream:
            message = await runnable.ainvoke(messages)
            _take_message(message, call)
            if on_token is not None and call.raw:
                on_token(call.raw)
            _raise_if_cut_at_token_cap(message, call)
            return
        merged = None
        async for chunk in runnable.astream(messages):
            merged = chunk if merged is None else merged + chunk
            text = _text_of(chunk)
            call.raw += text  # kept as far as it got if the timeout cuts the stream
            if text and on_token is not None:
                on_token(text)
        if merged is None:
            raise LLMOutputError("the stream ended without any message")
        _take_message(merged, call)
        if not _finished(merged):
            # Both clients return a stream cut short without its terminator as if it were
            # complete; only the missing finish reason tells.
            raise LLMOutputError(f"the stream ended before the model finished: {call.raw[:80]!r}")
        _raise_if_cut_at_token_cap(merged, call)


def _text_of(message: Any) -> str:
    content = getattr(message, "content", "")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks
        return "".join(
            block.get("text", "") if isinstance(block, dict) else str(block) for block in content
        )
    return str(content)


def _finished(message: Any) -> bool:
    metadata = getattr(message, "response_metadata", {}) or {}
    return bool(
        metadata.get("done_reason") or metadata.get("finish_reason") or metadata.get("done")
    )


def _raise_if_cut_at_token_cap(message: Any, call: LLMCall) -> None:
    """A model stopped by the token cap (Ollama num_predict, Groq max_tokens) has no answer."""
    metadata = getattr(message, "response_metadata", {}) or {}
    if "length" in (metadata.get("done_reason"), metadata.get("finish_reason")):
        raise LLMOutputError(
            f"the answer reached the token cap before it ended: {call.raw[-80:]!r}"
        )


def _take_message(message: Any, call: LLMCall) -> None:
    call.raw = _text_of(message)
    extra = getattr(message, "additional_kwargs", {}) or {}
    reasoning = extra.get("reasoning_content") or extra.get("thinking") or ""
    call.thinking = str(reasoning)
    usage = getattr(message, "usage_metadata", None) or {}
    call.input_tokens = usage.get("input_tokens")
    call.output_tokens = usage.get("output_tokens")
