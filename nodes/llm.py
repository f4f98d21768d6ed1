"""LLM-backed reviewers and sizer: prompts from files, tolerant parsing, retries, breaker, cache.

The chat models themselves (`ChatGroq`, `ChatOllama`) are built by the composition root and
handed in through `ChatProvider`; this module only speaks LangChain's chat-model interface, so
it never imports a provider SDK. Every failure ends in a `hold` verdict (or an unusable sizing)
that carries the error and whatever the model said, never in an approval.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nodes.grammar_schema import grammar_problems, grammar_safe_schema
from nodes.review import (
    ReviewRequest,
    SizingProposal,
    SizingRequest,
    TokenCallback,
    Verdict,
)
from prompts.loader import PromptError, PromptLibrary, RenderedPrompt

ChatFactory = Callable[[dict[str, Any]], Any]  # JSON schema -> a LangChain chat runnable


# Parsing ---------------------------------------------------------------------------------
class LLMOutputError(ValueError):
    """The model's answer could not be read as the expected JSON."""


_THINK_RE = re.compile(r"<think>(.*?)</think>", re.DOTALL | re.IGNORECASE)
_THINK_OPEN_RE = re.compile(r"<think>", re.IGNORECASE)
_THINK_CLOSE_RE = re.compile(r"</think>", re.IGNORECASE)
_FENCE_RE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)
_NOT_AVAILABLE = {"", "n/a", "na", "none", "null", "unknown", "-"}


def split_thinking(text: str) -> tuple[str, str]:
    """Separate DeepSeek-R1 style `<think>` blocks from the answer that follows them."""
    thinking = "\n".join(block.strip() for block in _THINK_RE.findall(text))
    answer = _THINK_RE.sub("", text)
    # Match the tags with regexes, not on `answer.lower()`: lowering can change the length of
    # the text ("İ" becomes two characters), which would shift the offsets.
    closes = list(_THINK_CLOSE_RE.finditer(answer))
    if closes:  # a block opened in the prompt (DeepSeek-R1 templates): all before it is thinking
        thinking = (thinking + "\n" + answer[: closes[-1].start()]).strip()
        answer = answer[closes[-1].end() :]
    opened = _THINK_OPEN_RE.search(answer)
    if opened:  # an unterminated block: everything after it is thinking, not an answer
        thinking = (thinking + "\n" + answer[opened.end() :]).strip()
        answer = answer[: opened.start()]
    return thinking.strip(), answer.strip()


def extract_json(text: str) -> dict[str, Any]:
    """Return the first JSON object in `text` (bare, fenced or surrounded by prose)."""
    candidates = [m.strip() for m in _FENCE_RE.findall(text)] + [text.strip()]
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _ = json.JSONDecoder().raw_decode(candidate[start:])
            except (ValueError, RecursionError):  # bad JSON, a 5000-digit int, deep nesting
                start = candidate.find("{", start + 1)
                continue
            if isinstance(value, dict):
                return value
            start = candidate.find("{", start + 1)
    raise LLMOutputError(f"no JSON object in the answer: {text[:200]!r}")


def _number(value: Any, *, percent_means_fraction: bool) -> float | None:
    """Read a number the way models write them: 0.15, "0.15", "15%", "N/A"."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:  # an int beyond float range: pydantic only catches ValueError
            raise ValueError(f"not a finite number: {value!r}") from None
    elif isinstance(value, str):
        text = value.strip().lower().replace(",", "")
        if text in _NOT_AVAILABLE:
            return None
        is_percent = text.endswith("%")
        try:
            number = float(text.rstrip("%").strip())
        except ValueError:
            raise ValueError(f"not a number: {value!r}") from None
        if is_percent and percent_means_fraction:
            number /= 100
    else:
        raise ValueError(f"not a number: {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"not a finite number: {value!r}")
    return number


_REASONING = "One or two short sentences."


class VerdictAnswer(BaseModel):
    """The JSON a reviewer must answer with."""

    model_config = ConfigDict(extra="ignore")

    verdict: Literal["buy", "sell", "hold"]
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    reasoning: str = Field(default="", max_length=4000, description=_REASONING)
    risks: list[str] = Field(default_factory=list)

    @field_validator("verdict", mode="before")
    @classmethod
    def _normalise_verdict(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("confidence", mode="before")
    @classmethod
    def _read_confidence(cls, value: Any) -> Any:
        number = _number(value, percent_means_fraction=True)
        if number is None:
            return 0.5
        written_as_percent = isinstance(value, str) and value.strip().endswith("%")
        if 1.0 < number <= 100.0 and not written_as_percent:  # "85" meant 85%
            number /= 100
        return number

    @field_validator("reasoning", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else str(value)

    @field_validator("risks", mode="before")
    @classmethod
    def _risks(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, str):
            return [value] if value.strip().lower() not in _NOT_AVAILABLE else []
        if isinstance(value, list):
            return [str(item) for item in value][:20]
        return [str(value)]


class SizingAnswer(BaseModel):
    """The plan's sizing JSON; percentages are in percent (2.0 means 2%)."""

    model_config = ConfigDict(extra="ignore")

    investment_ratio: float
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    max_loss_acceptable: float | None = None
    take_profit_target: float | None = None
    reasoning: str = Field(default="", max_length=4000, description=_REASONING)

    @field_validator("investment_ratio", mode="before")
    @classmethod
    def _ratio(cls, value: Any) -> Any:
        number = _number(value, percent_means_fraction=True)
        if number is None:
            raise ValueError("investment_ratio is required")
        return number

    @field_validator(
        "stop_loss_pct",
        "take_profit_pct",
        "max_loss_acceptable",
        "take_profit_target",
        mode="before",
    )
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return _number(value, percent_means_fraction=False)

    @field_validator("reasoning", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return "" if value is None else str(value)

    def protections(self) -> tuple[float, float]:
        """Return (stop-loss %, take-profit %), falling back to the plan's field names."""
        stop = self.stop_loss_pct if self.stop_loss_pct is not None else self.max_loss_acceptable
        take = self.take_profit_pct if self.take_profit_pct is not None else self.take_profit_target
        if stop is None or take is None:
            raise LLMOutputError("the answer gives no stop-loss or no take-profit")
        return abs(stop), abs(take)


# Every model an answer is parsed into. Each one's schema goes to the providers (Ollama's
# `format`), so each must compile into a llama.cpp grammar: tests walk this tuple, and the
# provider refuses a model that is not in it.
ANSWER_MODELS: tuple[type[BaseModel], ...] = (VerdictAnswer, SizingAnswer)


class AnswerSchemaError(ValueError):
    """An answer model is not registered, or its schema cannot be compiled into a grammar."""


def answer_wire_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema sent for `model`: grammar-safe, its large bounds in descriptions."""
    if model not in ANSWER_MODELS:
        raise AnswerSchemaError(
            f"{model.__name__} is not in ANSWER_MODELS; register it so its schema is checked"
        )
    schema = grammar_safe_schema(model)
    problems = grammar_problems(schema)
    if problems:
        raise AnswerSchemaError(
            f"the {model.__name__} schema cannot be compiled by llama.cpp: " + "; ".join(problems)
        )
    return schema


# Calls, cache and breaker -----------------------------------------------------------------
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

    def to_json(self) -> dict[str, Any]:
        """Return the call as plain JSON values."""
        return asdict(self)


class ResponseCache(Protocol):
    """Stored answers keyed by provider, model, prompt hash and rendered-input hash."""

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: Mapping[str, Any]) -> None: ...


@dataclass
class MemoryResponseCache:
    """A response cache that lives as long as the process."""

    entries: dict[str, dict[str, Any]] = field(default_factory=dict)

    def get(self, key: str) -> dict[str, Any] | None:
        """Return the stored answer or None."""
        return self.entries.get(key)

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Store an answer."""
        self.entries[key] = dict(value)


def cache_key(provider: str, model: str, prompt_ref: str, input_sha256: str) -> str:
    """Key a response by everything that determines it."""
    return hashlib.sha256(f"{provider}|{model}|{prompt_ref}|{input_sha256}".encode()).hexdigest()


@dataclass
class CircuitBreaker:
    """Stop calling a provider after repeated failures; try again after a pause."""

    failure_threshold: int = 3
    reset_after_s: float = 60.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None

    @property
    def state(self) -> Literal["closed", "open", "half-open"]:
        """closed: calls go through; open: refused; half-open: one trial call allowed."""
        if self.opened_at is None:
            return "closed"
        if self.clock() - self.opened_at >= self.reset_after_s:
            return "half-open"
        return "open"

    def allow(self) -> bool:
        """Whether a call may be made now."""
        return self.state != "open"

    def record_success(self) -> None:
        """Close the breaker."""
        self.failures = 0
        self.opened_at = None

    def record_failure(self) -> None:
        """Count a failure; open (or re-open) the breaker at the threshold."""
        self.failures += 1
        if self.failures >= self.failure_threshold or self.state == "half-open":
            self.opened_at = self.clock()


class ProviderError(RuntimeError):
    """The provider could not answer (after retries, or with the breaker open)."""

    def __init__(self, message: str, call: LLMCall) -> None:
        super().__init__(message)
        self.call = call


def _status_code(exc: BaseException) -> int | None:
    code = getattr(exc, "status_code", None)
    if isinstance(code, int):
        return code
    response = getattr(exc, "response", None)
    code = getattr(response, "status_code", None)
    return code if isinstance(code, int) else None


def _retry_after_s(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_SCHEMA_REFUSALS = ("required for format", "invalid json schema", "failed to parse grammar")


def is_retryable(exc: BaseException) -> bool:
    """429, 5xx, timeouts and connection failures are worth another try; nothing else is.

    Ollama answers 500 when it cannot compile the `format` schema into a grammar; the same
    schema fails the same way again, so that one is not retried.
    """
    if any(refusal in str(exc).lower() for refusal in _SCHEMA_REFUSALS):
        return False
    code = _status_code(exc)
    if code is not None:
        return code == 429 or code >= 500
    if isinstance(exc, TimeoutError | ConnectionError):
        return True
    name = type(exc).__name__.lower()
    return "timeout" in name or "connect" in name or "remoteprotocol" in name


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
            if on_token is not None and call.raw:
                on_token(call.raw)
            return call
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
                delay = _retry_after_s(exc)
                if delay is None:
                    delay = self.backoff_s * 2 ** (call.attempts - 1)
                await self.sleep(min(delay, self.max_backoff_s))
                continue
            self.breaker.record_success()
            call.latency_ms = round((time.perf_counter() - started) * 1000, 3)
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
        raise ProviderError(last_error, call)

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


# Reviewers --------------------------------------------------------------------------------
REVIEW_VARIABLES = frozenset(
    {
        "market",
        "action",
        "entry_probability",
        "exit_probability",
        "model_id",
        "bar_time",
        "features",
        "recent_closes",
        "position",
        "news",
        "account",
    }
)
SIZING_VARIABLES = frozenset(
    {
        "market",
        "capital_krw",
        "cash_krw",
        "positions",
        "entry_probability",
        "signal_strength",
        "volatility_60m",
        "atr_pct",
        "bollinger_width_pct",
        "win_rate",
        "recent_results",
        "losing_streak",
        "winning_streak",
        "risk_level",
        "limits",
    }
)


def review_values(request: ReviewRequest) -> dict[str, Any]:
    """The variables a review prompt is rendered with."""
    return {
        "market": request.market,
        "action": request.action,
        "entry_probability": request.entry_probability,
        "exit_probability": request.exit_probability,
        "model_id": request.model_id,
        "bar_time": request.bar_time,
        "features": {k: v for k, v in request.features.items() if v is not None},
        "recent_closes": list(request.recent_closes),
        "position": request.position,
        "news": list(request.news),
        "account": dict(request.account),
    }


def _hold(reviewer: str, reasoning: str, error: str, call: LLMCall | None) -> Verdict:
    return Verdict(
        verdict="hold",
        confidence=0.0,
        reasoning=reasoning,
        reviewer=reviewer,
        error=error,
        call=call.to_json() if call is not None else None,
    )


@dataclass
class LLMReviewer:
    """A review check answered by an LLM through a prompt file."""

    role: Literal["groq_check", "ollama_check"]
    provider: ChatProvider
    prompts: PromptLibrary

    @property
    def name(self) -> str:
        """provider:model, as every verdict and journal row names it."""
        return self.provider.label

    async def review(
        self, request: ReviewRequest, on_token: TokenCallback | None = None
    ) -> Verdict:
        """Render the prompt, ask the model, and read its verdict; any failure is a hold."""
        try:
            rendered = self.prompts.get(self.role).render(review_values(request))
        except PromptError as exc:
            return _hold(self.name, f"prompt unusable: {exc}", f"prompt: {exc}", None)
        try:
            call = await self.provider.complete(rendered, VerdictAnswer, on_token)
        except ProviderError as exc:
            return _hold(self.name, f"{self.provider.name} unavailable: {exc}", str(exc), exc.call)
        thinking, answer = split_thinking(call.raw)
        call.thinking = "\n".join(t for t in (call.thinking, thinking) if t)
        try:
            parsed = VerdictAnswer.model_validate(extract_json(answer))
        except (LLMOutputError, ValidationError) as exc:
            reason = _brief(exc)
            call.error = f"unparseable answer: {reason}"
            return _hold(self.name, f"unparseable answer, held: {reason}", call.error, call)
        return Verdict(
            verdict=parsed.verdict,
            confidence=parsed.confidence,
            reasoning=parsed.reasoning,
            reviewer=self.name,
            risks=tuple(parsed.risks),
            call=call.to_json(),
        )


@dataclass
class LLMSizer:
    """The sizing proposal answered by an LLM through `prompts/sizing.md`."""

    provider: ChatProvider
    prompts: PromptLibrary

    @property
    def name(self) -> str:
        """provider:model."""
        return self.provider.label

    async def size(
        self, request: SizingRequest, on_token: TokenCallback | None = None
    ) -> SizingProposal:
        """Ask the model for the sizing JSON; an unusable answer is a NaN proposal (a hold)."""
        call: LLMCall | None = None
        try:
            rendered = self.prompts.get("sizing").render(sizing_values(request))
            call = await self.provider.complete(rendered, SizingAnswer, on_token)
            thinking, answer = split_thinking(call.raw)
            call.thinking = "\n".join(t for t in (call.thinking, thinking) if t)
            parsed = SizingAnswer.model_validate(extract_json(answer))
            stop, take = parsed.protections()
        except ProviderError as exc:
            return _unusable(self.name, str(exc), exc.call)
        except (PromptError, LLMOutputError, ValidationError) as exc:
            if call is not None:
                call.error = f"unparseable answer: {_brief(exc)}"
            return _unusable(self.name, _brief(exc), call)
        return SizingProposal(
            investment_ratio=parsed.investment_ratio,
            stop_loss_pct=stop,
            take_profit_pct=take,
            reasoning=parsed.reasoning,
            reviewer=self.name,
            call=call.to_json(),
        )


def sizing_values(request: SizingRequest) -> dict[str, Any]:
    """The variables the sizing prompt is rendered with."""
    return {
        "market": request.market,
        "capital_krw": round(request.capital_krw),
        "cash_krw": round(request.cash_krw),
        "positions": request.positions,
        "entry_probability": request.entry_probability,
        "signal_strength": request.signal_strength,
        "volatility_60m": request.volatility_60m,
        "atr_pct": request.atr_pct,
        "bollinger_width_pct": request.bollinger_width_pct,
        "win_rate": request.win_rate,
        "recent_results": list(request.recent_results),
        "losing_streak": request.losing_streak,
        "winning_streak": request.winning_streak,
        "risk_level": request.risk_level,
        "limits": dict(request.limits),
    }


def _unusable(reviewer: str, error: str, call: LLMCall | None) -> SizingProposal:
    return SizingProposal(
        investment_ratio=math.nan,
        stop_loss_pct=math.nan,
        take_profit_pct=math.nan,
        reasoning=f"no usable sizing: {error}",
        reviewer=reviewer,
        error=error,
        call=call.to_json() if call is not None else None,
    )


def _brief(exc: BaseException) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "answer"
        return f"{where}: {first['msg']}"
    return str(exc)[:300]
