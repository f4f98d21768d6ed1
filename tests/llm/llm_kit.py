"""Stand-ins and builders shared by the tests of llm/: a scripted chat model, a recording sleep.

The chat model here is `StandInRunnable`, a stand-in for LangChain's Runnable interface
(`ainvoke` returning an `AIMessage`, `astream` yielding `AIMessageChunk`s) that lets a unit
test script what the model says or raises. It is used in these UNIT tests only; the real
`ChatGroq` and `ChatOllama` are tested against local protocol servers in
tests/integration/test_llm_servers.py. The errors it raises are the provider SDKs' own
exception classes (`groq.RateLimitError` with an `httpx.Response`, `ollama.ResponseError`).
Backoff is asserted through an injected recording `sleep`, and the breaker's pause through an
injected clock, so nothing here sleeps for timing. It lives outside conftest.py so test
modules can import it by a unique module name.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import groq
import httpx
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
)

from graph.review import ReviewRequest, SizingRequest
from llm.provider import ChatProvider
from llm.resilience import CircuitBreaker
from llm.reviewers import LLMReviewer
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary


def _graph_kit() -> ModuleType:
    """Import tests/graph/graph_kit.py (not on the path when only tests/llm runs)."""
    if "graph_kit" in sys.modules:
        return sys.modules["graph_kit"]
    path = Path(__file__).resolve().parents[1] / "graph" / "graph_kit.py"
    spec = importlib.util.spec_from_file_location("graph_kit", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["graph_kit"] = module
    spec.loader.exec_module(module)
    return module


kit = _graph_kit()


USAGE = {"input_tokens": 321, "output_tokens": 45, "total_tokens": 366}


MODEL = "llama-3.3-70b-versatile"


AGREE_BUY = '{"verdict": "buy", "confidence": 0.8, "reasoning": "trend up", "risks": ["thin book"]}'


PROMPTS = PromptLibrary(DEFAULT_PROMPTS_DIR)


# Stand-ins ---------------------------------------------------------------------------------
@dataclass
class StandInRunnable:
    """Answers each call with the next scripted reply (text) or raises it (an exception).

    The last entry repeats once the script is used up.
    """

    script: list[str | BaseException]
    chunk_size: int = 6
    reasoning: str | None = None  # sent as additional_kwargs["reasoning_content"]
    finish: bool = True  # the last chunk carries finish_reason, as a complete stream does
    calls: int = 0
    received: list[list[BaseMessage]] = field(default_factory=list)

    def _next(self, messages: list[BaseMessage]) -> str:
        self.received.append(list(messages))
        reply = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def _extra(self) -> dict[str, Any]:
        return {"reasoning_content": self.reasoning} if self.reasoning else {}

    async def ainvoke(self, messages: list[BaseMessage]) -> AIMessage:
        text = self._next(messages)
        return AIMessage(content=text, usage_metadata=USAGE, additional_kwargs=self._extra())  # type: ignore[arg-type]

    async def astream(self, messages: list[BaseMessage]) -> AsyncIterator[AIMessageChunk]:
        text = self._next(messages)
        pieces = [text[i : i + self.chunk_size] for i in range(0, len(text), self.chunk_size)]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            yield AIMessageChunk(
                content=piece,
                usage_metadata=USAGE if last else None,  # type: ignore[arg-type]
                additional_kwargs=self._extra() if last else {},
                response_metadata={"finish_reason": "stop"} if last and self.finish else {},
            )


@dataclass
class StuckRunnable:
    """A call that never answers (a hung connection)."""

    calls: int = 0

    async def ainvoke(self, messages: list[BaseMessage]) -> AIMessage:
        self.calls += 1
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def astream(self, messages: list[BaseMessage]) -> AsyncIterator[AIMessageChunk]:
        self.calls += 1
        await asyncio.Event().wait()
        yield AIMessageChunk(content="unreachable")


@dataclass
class RecordingSleep:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Factory:
    runnable: Any
    schemas: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, schema: dict[str, Any]) -> Any:
        self.schemas.append(schema)
        return self.runnable


def make_provider(
    runnable: Any,
    *,
    name: str = "groq",
    stream: bool = False,
    breaker: CircuitBreaker | None = None,
    **options: Any,
) -> tuple[ChatProvider, RecordingSleep]:
    sleep = RecordingSleep()
    provider = ChatProvider(
        name=name,
        model=MODEL,
        factory=Factory(runnable),
        stream=stream,
        breaker=breaker or CircuitBreaker(),
        sleep=sleep,
        **options,
    )
    return provider, sleep


def http_error(status: int, retry_after: str | None = None) -> groq.APIStatusError:
    headers = {"retry-after": retry_after} if retry_after is not None else {}
    request = httpx.Request("POST", "https://api.groq.com/openai/v1/chat/completions")
    response = httpx.Response(status, headers=headers, request=request)
    kind: type[groq.APIStatusError] = {
        400: groq.BadRequestError,
        401: groq.AuthenticationError,
        429: groq.RateLimitError,
        500: groq.InternalServerError,
        503: groq.InternalServerError,
    }[status]
    return kind(f"HTTP {status}", response=response, body=None)


def review_request(action: str = "buy", role: str = "groq_check") -> ReviewRequest:
    return ReviewRequest(
        role=role,  # type: ignore[arg-type]
        action=action,  # type: ignore[arg-type]
        market="KRW-ETH",
        entry_probability=0.71,
        exit_probability=0.12,
        features={"rsi_14": 48.2, "macd_hist": 0.0003, "volatility_60": 0.0011, "ret_60": None},
        position=None,
        model_id="lgbm-2025-09",
        bar_time="2025-09-19T00:00:00+00:00",
        recent_closes=(6_000_000.0, 6_010_000.0),
        account={"krw": "1000000", "equity": "1000000", "positions": {}},
    )


def sizing_request() -> SizingRequest:
    return SizingRequest(
        market="KRW-ETH",
        capital_krw=1_000_000.0,
        cash_krw=1_000_000.0,
        positions={},
        entry_probability=0.71,
        volatility_60m=0.0011,
        range_10m=0.002,
        recent_results=[0.01, -0.004],
        risk_level="medium",
        signal_strength="strong",
        atr_pct=0.2,
        win_rate=0.5,
        limits={  # what the sizing node passes
            "min_investment_ratio": 0.05,
            "max_investment_ratio": 1.0,
            "stop_loss_cap_pct": 3.0,
            "take_profit_cap_pct": 20.0,
        },
    )


def reviewer_over(
    runnable: Any, *, role: str = "groq_check", stream: bool = False, **options: Any
) -> LLMReviewer:
    provider, _ = make_provider(runnable, stream=stream, **options)
    return LLMReviewer(role=role, provider=provider, prompts=PROMPTS)  # type: ignore[arg-type]


def rendered_review() -> Any:
    from llm.reviewers import review_values

    return PROMPTS.get("groq_check").render(review_values(review_request()))
