"""The LLM reviewers and sizer: parsing, retries, the breaker, the cache, and the graph path.

The chat model here is `StandInRunnable`, a stand-in for LangChain's Runnable interface
(`ainvoke` returning an `AIMessage`, `astream` yielding `AIMessageChunk`s) that lets a unit
test script what the model says or raises. It is used in these UNIT tests only; the real
`ChatGroq` and `ChatOllama` are tested against local protocol servers in
tests/integration/test_llm_servers.py. The errors it raises are the provider SDKs' own
exception classes (`groq.RateLimitError` with an `httpx.Response`, `ollama.ResponseError`).
Backoff is asserted through an injected recording `sleep`, and the breaker's pause through an
injected clock, so nothing here sleeps for timing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import math
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import groq
import httpx
import ollama
import pytest
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from pydantic import BaseModel, ValidationError

from graph.context import TradingPolicy
from nodes.llm import (
    ChatProvider,
    CircuitBreaker,
    LLMOutputError,
    LLMReviewer,
    LLMSizer,
    MemoryResponseCache,
    ProviderError,
    SizingAnswer,
    VerdictAnswer,
    _retry_after_s,
    answer_wire_schema,
    cache_key,
    extract_json,
    is_retryable,
    split_thinking,
)
from nodes.review import ReviewRequest, SizingRequest
from nodes.sizing import signal_tier
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary


def _graph_kit() -> ModuleType:
    """Import tests/graph/graph_kit.py (not on the path when only tests/nodes runs)."""
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
    from nodes.llm import review_values

    return PROMPTS.get("groq_check").render(review_values(review_request()))


# split_thinking ------------------------------------------------------------------------------
def test_think_block_before_json_is_kept_as_thinking_and_the_json_is_the_answer() -> None:
    text = '<think>\nRSI is low, MACD turning.\n</think>\n\n{"verdict": "buy"}'

    thinking, answer = split_thinking(text)

    assert thinking == "RSI is low, MACD turning."
    assert extract_json(answer) == {"verdict": "buy"}


def test_unterminated_think_with_no_answer_leaves_an_empty_answer() -> None:
    thinking, answer = split_thinking('<think>maybe {"verdict": "buy"} if the trend holds')

    assert answer == ""
    assert thinking == 'maybe {"verdict": "buy"} if the trend holds'


def test_unterminated_think_after_an_answer_keeps_only_the_answer() -> None:
    thinking, answer = split_thinking('{"verdict": "hold"}\n<think>second thoughts {"verdict"')

    assert answer == '{"verdict": "hold"}'
    assert thinking == 'second thoughts {"verdict"'


def test_several_think_blocks_are_joined_in_order_and_removed_from_the_answer() -> None:
    text = '<think>one</think>{"verdict": <think>two</think>"sell"}<think>three</think>'

    thinking, answer = split_thinking(text)

    assert thinking == "one\ntwo\nthree"
    assert answer == '{"verdict": "sell"}'


@pytest.mark.parametrize(
    "text",
    ['<THINK>hmm</THINK>{"v": 1}', '<Think>hmm</tHiNk>{"v": 1}', '<think>hmm</THINK> {"v": 1}'],
)
def test_think_tags_match_whatever_their_case(text: str) -> None:
    thinking, answer = split_thinking(text)

    assert (thinking, answer) == ("hmm", '{"v": 1}')


def test_closing_tag_without_an_opening_one_makes_everything_before_it_thinking() -> None:
    # DeepSeek-R1 chat templates put "<think>" in the prompt, so the answer starts inside it.
    text = 'Maybe {"verdict": "buy"}? No, volume is thin.\n</think>\n{"verdict": "hold"}'

    thinking, answer = split_thinking(text)

    assert answer == '{"verdict": "hold"}'
    assert thinking == 'Maybe {"verdict": "buy"}? No, volume is thin.'


def test_text_that_grows_when_lowercased_does_not_shift_the_unterminated_block() -> None:
    # "İ".lower() is two characters: offsets found on the lowered text would cut the wrong place.
    text = "İ" * 40 + '<think>{"verdict": "buy"}'

    thinking, answer = split_thinking(text)

    assert answer == "İ" * 40
    assert thinking == '{"verdict": "buy"}'


def test_text_without_think_tags_is_all_answer() -> None:
    assert split_thinking('  {"verdict": "sell"}  ') == ("", '{"verdict": "sell"}')


# extract_json ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        '{"verdict": "buy", "confidence": 0.7}',
        '```json\n{"verdict": "buy", "confidence": 0.7}\n```',
        '```JSON {"verdict": "buy", "confidence": 0.7} ```',
        '```\n{"verdict": "buy", "confidence": 0.7}\n```',
        'Here is my answer: {"verdict": "buy", "confidence": 0.7} Hope that helps!',
        'Sure.\n```json\n{"verdict": "buy", "confidence": 0.7}\n```\nDone.',
    ],
    ids=["bare", "fenced-json", "fenced-upper", "fenced-plain", "prose", "prose-and-fence"],
)
def test_json_object_is_found_bare_fenced_or_inside_prose(text: str) -> None:
    assert extract_json(text) == {"verdict": "buy", "confidence": 0.7}


def test_braces_inside_strings_do_not_end_the_object() -> None:
    text = 'x {"verdict": "hold", "reasoning": "a } then a { and \\"}\\"", "risks": []} y'

    assert extract_json(text) == {
        "verdict": "hold",
        "reasoning": 'a } then a { and "}"',
        "risks": [],
    }


def test_first_json_object_wins_over_later_ones() -> None:
    text = '{"verdict": "hold"} and later {"verdict": "buy"}'

    assert extract_json(text) == {"verdict": "hold"}


def test_nested_object_is_returned_whole() -> None:
    assert extract_json('{"a": {"b": {"c": 1}}}') == {"a": {"b": {"c": 1}}}


def test_broken_brace_before_a_valid_object_is_skipped() -> None:
    assert extract_json('{oops} {"verdict": "sell"}') == {"verdict": "sell"}


@pytest.mark.parametrize(
    "text",
    ["", "BUY", "[1, 2, 3]", "{verdict: buy}", '{"verdict": "buy"', "```json\n```", "42"],
)
def test_text_without_a_json_object_raises_llm_output_error(text: str) -> None:
    with pytest.raises(LLMOutputError, match="no JSON object"):
        extract_json(text)


@pytest.mark.parametrize(
    "poison",
    ['{"n": ' + "9" * 5000 + "}", '{"n": ' + "[" * 100_000 + "}"],
    ids=["5000-digit-int", "deeply-nested"],
)
def test_undecodable_json_is_an_output_error_not_a_crash(poison: str) -> None:
    with pytest.raises(LLMOutputError):
        extract_json(poison)

    assert extract_json(poison + ' {"verdict": "hold"}') == {"verdict": "hold"}


# VerdictAnswer ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "verdict"), [("BUY ", "buy"), (" Sell", "sell"), ("hold\n", "hold")]
)
def test_verdict_is_stripped_and_lowercased(written: str, verdict: str) -> None:
    assert VerdictAnswer.model_validate({"verdict": written}).verdict == verdict


@pytest.mark.parametrize(
    ("written", "confidence"),
    [
        ("85%", 0.85),
        (85, 0.85),
        ("85", 0.85),
        (0.7, 0.7),
        ("0.7", 0.7),
        (1, 1.0),
        (100, 1.0),
        (1.7, 0.017),  # in (1, 100]: read as percent
        ("N/A", 0.5),
        (None, 0.5),
        ("", 0.5),
        (0, 0.0),
    ],
)
def test_confidence_reads_fractions_percents_and_missing_values(
    written: Any, confidence: float
) -> None:
    answer = VerdictAnswer.model_validate({"verdict": "buy", "confidence": written})

    assert answer.confidence == pytest.approx(confidence)


@pytest.mark.parametrize(
    "written",
    [
        *(101, 250.0, -0.1, "-5%", "150%", "high", "nan", float("inf"), [0.5]),
        pytest.param(10**400, id="10**400"),
    ],
)
def test_confidence_out_of_range_or_unreadable_is_a_validation_error(written: Any) -> None:
    with pytest.raises(ValidationError):
        VerdictAnswer.model_validate({"verdict": "buy", "confidence": written})


def test_confidence_default_is_half_when_missing() -> None:
    assert VerdictAnswer.model_validate({"verdict": "hold"}).confidence == 0.5


@pytest.mark.parametrize(
    ("written", "risks"),
    [
        ("thin volume", ["thin volume"]),
        ("none", []),
        ("N/A", []),
        (None, []),
        (["a", 2, None], ["a", "2", "None"]),
        (7, ["7"]),
        ([f"r{i}" for i in range(30)], [f"r{i}" for i in range(20)]),
    ],
)
def test_risks_accept_a_string_none_or_a_list_and_keep_at_most_twenty(
    written: Any, risks: list[str]
) -> None:
    assert VerdictAnswer.model_validate({"verdict": "sell", "risks": written}).risks == risks


@pytest.mark.parametrize("written", ["long", "approve", "yes", "", "buy!", None, 1, ["buy"]])
def test_verdict_outside_buy_sell_hold_is_a_validation_error(written: Any) -> None:
    with pytest.raises(ValidationError):
        VerdictAnswer.model_validate({"verdict": written})


def test_missing_verdict_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        VerdictAnswer.model_validate({"confidence": 0.9})


def test_extra_fields_are_ignored_and_reasoning_none_is_empty() -> None:
    answer = VerdictAnswer.model_validate(
        {"verdict": "hold", "reasoning": None, "action": "buy", "score": 9}
    )

    assert answer.model_dump() == {
        "verdict": "hold",
        "confidence": 0.5,
        "reasoning": "",
        "risks": [],
    }


# SizingAnswer ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("written", "ratio"), [("15%", 0.15), ("0.3", 0.3), (0.25, 0.25), (" 2.5 ", 2.5)]
)
def test_investment_ratio_reads_fractions_and_percents(written: Any, ratio: float) -> None:
    answer = SizingAnswer.model_validate({"investment_ratio": written})

    assert answer.investment_ratio == pytest.approx(ratio)


@pytest.mark.parametrize(
    "written", ["N/A", None, "", "half", True, "inf", pytest.param(10**400, id="10**400")]
)
def test_unreadable_investment_ratio_is_a_validation_error(written: Any) -> None:
    with pytest.raises(ValidationError, match="investment_ratio"):
        SizingAnswer.model_validate({"investment_ratio": written})


def test_missing_investment_ratio_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="investment_ratio"):
        SizingAnswer.model_validate({"stop_loss_pct": 1.0, "take_profit_pct": 2.0})


def test_stop_and_take_written_with_percent_sign_stay_in_percent() -> None:
    answer = SizingAnswer.model_validate(
        {"investment_ratio": 0.2, "stop_loss_pct": "2%", "take_profit_pct": "4.5 %"}
    )

    assert answer.protections() == (2.0, 4.5)


def test_protections_fall_back_to_max_loss_acceptable_and_take_profit_target() -> None:
    answer = SizingAnswer.model_validate(
        {"investment_ratio": 0.2, "max_loss_acceptable": "1.5", "take_profit_target": 3}
    )

    assert answer.protections() == (1.5, 3.0)


def test_explicit_protections_win_over_the_fallback_names() -> None:
    answer = SizingAnswer.model_validate(
        {
            "investment_ratio": 0.2,
            "stop_loss_pct": 1.0,
            "take_profit_pct": 2.0,
            "max_loss_acceptable": 9.0,
            "take_profit_target": 9.0,
        }
    )

    assert answer.protections() == (1.0, 2.0)


def test_negative_stop_loss_is_read_as_its_magnitude() -> None:
    answer = SizingAnswer.model_validate(
        {"investment_ratio": 0.2, "stop_loss_pct": -1.2, "take_profit_pct": "-2.4%"}
    )

    assert answer.protections() == (1.2, 2.4)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"stop_loss_pct": 1.0},
        {"take_profit_target": 2.0},
        {"stop_loss_pct": "n/a", "take_profit_pct": 2.0},
    ],
)
def test_missing_stop_or_take_profit_raises_llm_output_error(fields: dict[str, Any]) -> None:
    answer = SizingAnswer.model_validate({"investment_ratio": 0.2, **fields})

    with pytest.raises(LLMOutputError, match="no stop-loss or no take-profit"):
        answer.protections()


# LLMReviewer -------------------------------------------------------------------------------
async def test_agreeing_answer_returns_the_proposed_action_with_the_call_recorded() -> None:
    runnable = StandInRunnable([AGREE_BUY])
    reviewer = reviewer_over(runnable)

    verdict = await reviewer.review(review_request("buy"))

    assert verdict.verdict == "buy"
    assert verdict.error is None
    assert verdict.confidence == 0.8
    assert verdict.risks == ("thin book",)
    assert verdict.reviewer == f"groq:{MODEL}"
    call = verdict.call
    assert call is not None
    assert re.fullmatch(r"groq_check@[0-9a-f]{8}", call["prompt_ref"])
    assert call["prompt_ref"] == PROMPTS.get("groq_check").ref
    assert (call["provider"], call["model"]) == ("groq", MODEL)
    assert (call["input_tokens"], call["output_tokens"]) == (321, 45)
    assert call["raw"] == AGREE_BUY
    assert (call["attempts"], call["cached"], call["error"]) == (1, False, None)
    assert call["input_sha256"] == rendered_review().input_sha256


async def test_reviewer_sends_the_rendered_prompt_as_system_then_user_message() -> None:
    runnable = StandInRunnable([AGREE_BUY])

    verdict = await reviewer_over(runnable).review(review_request("buy"))

    assert verdict.call is not None
    system, user = runnable.received[0]
    assert isinstance(system, SystemMessage)
    assert isinstance(user, HumanMessage)
    assert (system.content, user.content) == (verdict.call["system"], verdict.call["user"])
    assert "KRW-ETH" in user.content


async def test_ollama_reviewer_uses_the_ollama_check_prompt() -> None:
    runnable = StandInRunnable(['{"verdict": "sell"}'])
    reviewer = reviewer_over(runnable, role="ollama_check", name="ollama")

    verdict = await reviewer.review(review_request("sell", role="ollama_check"))

    assert verdict.verdict == "sell"
    assert verdict.reviewer == f"ollama:{MODEL}"
    assert verdict.call is not None
    assert verdict.call["prompt_ref"] == PROMPTS.get("ollama_check").ref


async def test_disagreeing_answer_returns_the_other_action_without_error() -> None:
    verdict = await reviewer_over(StandInRunnable(['{"verdict": "sell"}'])).review(
        review_request("buy")
    )

    assert (verdict.verdict, verdict.error) == ("sell", None)


@pytest.mark.parametrize(
    "raw",
    [
        "I would buy this one.",
        '{"verdict": "approve", "confidence": 0.9}',
        '{"verdict": "long"}',
        '{"verdict": "buy", "confidence": 250}',
        '<think>{"verdict": "buy"} looks right',
        "",
    ],
    ids=["prose", "approve", "long", "confidence-250", "unterminated-think", "empty"],
)
async def test_unusable_answer_holds_with_the_error_and_the_raw_text_kept(raw: str) -> None:
    verdict = await reviewer_over(StandInRunnable([raw])).review(review_request("buy"))

    assert verdict.verdict == "hold"
    assert verdict.confidence == 0.0
    assert verdict.error is not None and verdict.error.startswith("unparseable answer")
    assert verdict.call is not None
    assert verdict.call["raw"] == raw
    assert verdict.call["error"] == verdict.error


async def test_thinking_from_reasoning_content_and_inline_tags_are_both_recorded() -> None:
    runnable = StandInRunnable(['<think>inline</think>{"verdict": "buy"}'], reasoning="separate")

    verdict = await reviewer_over(runnable).review(review_request("buy"))

    assert verdict.verdict == "buy"
    assert verdict.call is not None
    assert verdict.call["thinking"] == "separate\ninline"


async def test_streamed_answer_reaches_the_token_callback_in_order() -> None:
    runnable = StandInRunnable([AGREE_BUY], chunk_size=5)
    tokens: list[str] = []

    verdict = await reviewer_over(runnable, stream=True).review(
        review_request("buy"), on_token=tokens.append
    )

    assert tokens == [AGREE_BUY[i : i + 5] for i in range(0, len(AGREE_BUY), 5)]
    assert verdict.verdict == "buy"
    assert verdict.call is not None
    assert verdict.call["raw"] == AGREE_BUY
    assert (verdict.call["input_tokens"], verdict.call["output_tokens"]) == (321, 45)


async def test_unstreamed_answer_reaches_the_token_callback_once_whole() -> None:
    tokens: list[str] = []

    await reviewer_over(StandInRunnable([AGREE_BUY])).review(review_request(), tokens.append)

    assert tokens == [AGREE_BUY]


async def test_provider_failure_holds_with_the_provider_error_and_the_call() -> None:
    reviewer = reviewer_over(StandInRunnable([http_error(401)]))

    verdict = await reviewer.review(review_request("buy"))

    assert verdict.verdict == "hold"
    assert verdict.error is not None and "AuthenticationError" in verdict.error
    assert verdict.call is not None
    assert (verdict.call["attempts"], verdict.call["raw"]) == (1, "")


async def test_prompt_that_cannot_render_holds_without_calling_the_model() -> None:
    runnable = StandInRunnable([AGREE_BUY])
    reviewer = reviewer_over(runnable)
    reviewer.prompts = PromptLibrary(Path(__file__).parent / "no-such-prompts")

    verdict = await reviewer.review(review_request("buy"))

    assert verdict.verdict == "hold"
    assert verdict.error is not None and verdict.error.startswith("prompt:")
    assert runnable.calls == 0


# LLMSizer ----------------------------------------------------------------------------------
def sizer_over(runnable: Any, **options: Any) -> LLMSizer:
    provider, _ = make_provider(runnable, **options)
    return LLMSizer(provider=provider, prompts=PROMPTS)


async def test_sizing_answer_becomes_a_proposal_with_the_call_recorded() -> None:
    raw = '```json\n{"investment_ratio": "30%", "stop_loss_pct": 1.2, "take_profit_pct": "2.5%",'
    raw += ' "reasoning": "medium"}\n```'

    proposal = await sizer_over(StandInRunnable([raw])).size(sizing_request())

    assert (proposal.investment_ratio, proposal.stop_loss_pct, proposal.take_profit_pct) == (
        pytest.approx(0.3),
        1.2,
        2.5,
    )
    assert (proposal.reasoning, proposal.error, proposal.reviewer) == (
        "medium",
        None,
        f"groq:{MODEL}",
    )
    assert proposal.call is not None
    assert proposal.call["prompt_ref"] == PROMPTS.get("sizing").ref
    assert proposal.call["raw"] == raw


async def test_sizing_answer_with_the_plans_field_names_uses_them_as_protections() -> None:
    raw = '{"investment_ratio": 0.2, "max_loss_acceptable": 1.0, "take_profit_target": 2.0}'

    proposal = await sizer_over(StandInRunnable([raw])).size(sizing_request())

    assert (proposal.stop_loss_pct, proposal.take_profit_pct, proposal.error) == (1.0, 2.0, None)


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ("invest half of it", "no JSON object"),
        ('{"investment_ratio": "N/A", "stop_loss_pct": 1, "take_profit_pct": 2}', "ratio"),
        ('{"investment_ratio": 0.2}', "no stop-loss or no take-profit"),
    ],
)
async def test_unusable_sizing_answer_is_a_nan_proposal_with_error_and_raw(
    raw: str, error: str
) -> None:
    proposal = await sizer_over(StandInRunnable([raw])).size(sizing_request())

    assert proposal.error is not None and error in proposal.error
    numbers = (proposal.investment_ratio, proposal.stop_loss_pct, proposal.take_profit_pct)
    assert all(math.isnan(n) for n in numbers)
    assert proposal.call is not None
    assert proposal.call["raw"] == raw
    assert proposal.call["error"].startswith("unparseable answer")


async def test_sizer_provider_failure_is_a_nan_proposal_with_the_call() -> None:
    proposal = await sizer_over(StandInRunnable([http_error(400)])).size(sizing_request())

    assert proposal.error is not None and "BadRequestError" in proposal.error
    assert math.isnan(proposal.investment_ratio)
    assert proposal.call is not None and proposal.call["attempts"] == 1


# ChatProvider: retries -----------------------------------------------------------------------
async def test_rate_limit_with_retry_after_is_retried_after_that_many_seconds() -> None:
    runnable = StandInRunnable([http_error(429, retry_after="2"), AGREE_BUY])
    provider, sleep = make_provider(runnable)

    call = await provider.complete(rendered_review(), VerdictAnswer)

    assert (call.attempts, call.raw, call.error) == (2, AGREE_BUY, None)
    assert sleep.delays == [2.0]
    assert runnable.calls == 2
    assert (provider.breaker.state, provider.breaker.failures) == ("closed", 0)


async def test_retry_after_longer_than_max_backoff_is_capped() -> None:
    runnable = StandInRunnable([http_error(429, retry_after="120"), AGREE_BUY])
    provider, sleep = make_provider(runnable, max_backoff_s=20.0)

    await provider.complete(rendered_review(), VerdictAnswer)

    assert sleep.delays == [20.0]


async def test_retry_after_as_a_past_http_date_means_retry_now() -> None:
    runnable = StandInRunnable(
        [http_error(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), AGREE_BUY]
    )
    provider, sleep = make_provider(runnable)

    await provider.complete(rendered_review(), VerdictAnswer)

    assert sleep.delays == [0.0]


async def test_server_errors_back_off_exponentially_then_raise_provider_error() -> None:
    runnable = StandInRunnable([http_error(500)])
    provider, sleep = make_provider(
        runnable, max_retries=3, backoff_s=0.5, breaker=CircuitBreaker(failure_threshold=10)
    )

    with pytest.raises(ProviderError, match="InternalServerError") as raised:
        await provider.complete(rendered_review(), VerdictAnswer)

    assert sleep.delays == [0.5, 1.0, 2.0]
    assert raised.value.call.attempts == 4
    assert runnable.calls == 4
    assert raised.value.call.error == str(raised.value)


async def test_exponential_backoff_is_capped_by_max_backoff() -> None:
    runnable = StandInRunnable([http_error(503)])
    provider, sleep = make_provider(
        runnable,
        max_retries=4,
        backoff_s=1.0,
        max_backoff_s=3.0,
        breaker=CircuitBreaker(failure_threshold=10),
    )

    with pytest.raises(ProviderError):
        await provider.complete(rendered_review(), VerdictAnswer)

    assert sleep.delays == [1.0, 2.0, 3.0, 3.0]


@pytest.mark.parametrize(
    "error",
    [http_error(400), http_error(401), ollama.ResponseError("model not found", 404), ValueError()],
    ids=["400", "401", "ollama-404", "value-error"],
)
async def test_client_errors_are_not_retried(error: BaseException) -> None:
    runnable = StandInRunnable([error, AGREE_BUY])
    provider, sleep = make_provider(runnable, max_retries=3)

    with pytest.raises(ProviderError) as raised:
        await provider.complete(rendered_review(), VerdictAnswer)

    assert raised.value.call.attempts == 1
    assert runnable.calls == 1
    assert sleep.delays == []


@pytest.mark.parametrize(
    "error",
    [
        ollama.ResponseError("overloaded", 503),
        ConnectionError("refused"),
        TimeoutError(),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("peer closed"),
    ],
    ids=["ollama-503", "connection", "timeout", "httpx-connect", "httpx-timeout", "protocol"],
)
async def test_transient_failures_are_retried_once_then_succeed(error: BaseException) -> None:
    runnable = StandInRunnable([error, AGREE_BUY])
    provider, sleep = make_provider(runnable, backoff_s=0.25)

    call = await provider.complete(rendered_review(), VerdictAnswer)

    assert (call.attempts, call.raw) == (2, AGREE_BUY)
    assert sleep.delays == [0.25]


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        (http_error(429), True),
        (http_error(500), True),
        (http_error(400), False),
        (ollama.ResponseError("x", 502), True),
        (ollama.ResponseError("x", 404), False),
        (TimeoutError(), True),
        (ConnectionResetError(), True),
        (httpx.ConnectTimeout("x"), True),
        (KeyError("x"), False),
        (LLMOutputError("x"), False),
    ],
)
def test_is_retryable_says_yes_to_429_5xx_timeouts_and_connection_failures(
    error: BaseException, retryable: bool
) -> None:
    assert is_retryable(error) is retryable


@pytest.mark.parametrize(
    ("retry_after", "seconds"), [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None)]
)
def test_retry_after_header_is_read_in_seconds(retry_after: str, seconds: float | None) -> None:
    assert _retry_after_s(http_error(429, retry_after=retry_after)) == seconds


def test_missing_retry_after_header_or_response_gives_none() -> None:
    assert _retry_after_s(http_error(429)) is None
    assert _retry_after_s(ollama.ResponseError("x", 429)) is None


async def test_provider_timeout_on_a_stuck_call_raises_timed_out() -> None:
    runnable = StuckRunnable()
    provider, sleep = make_provider(runnable, timeout_s=0.05, max_retries=1, backoff_s=0.1)

    with pytest.raises(ProviderError, match=r"timed out after 0\.05s") as raised:
        await provider.complete(rendered_review(), VerdictAnswer)

    assert raised.value.call.attempts == 2
    assert runnable.calls == 2
    assert sleep.delays == [0.1]


async def test_stuck_stream_times_out_too() -> None:
    provider, _ = make_provider(StuckRunnable(), stream=True, timeout_s=0.05, max_retries=0)

    with pytest.raises(ProviderError, match="timed out"):
        await provider.complete(rendered_review(), VerdictAnswer)


async def test_stream_that_ends_without_a_chunk_is_an_error_not_an_empty_answer() -> None:
    provider, _ = make_provider(StandInRunnable([""]), stream=True)

    with pytest.raises(ProviderError, match="stream ended without any message"):
        await provider.complete(rendered_review(), VerdictAnswer)


async def test_stream_cut_short_without_a_finish_reason_is_an_error() -> None:
    runnable = StandInRunnable(['{"verdict": "buy"}'], finish=False)
    provider, _ = make_provider(runnable, stream=True, max_retries=0)

    with pytest.raises(ProviderError, match="stream ended before the model finished"):
        await provider.complete(rendered_review(), VerdictAnswer)


# ChatProvider: breaker -----------------------------------------------------------------------
async def test_breaker_opens_after_threshold_failures_and_refuses_without_calling() -> None:
    clock = FakeClock()
    runnable = StandInRunnable([http_error(500)])
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=60.0, clock=clock)
    provider, _ = make_provider(runnable, max_retries=2, breaker=breaker)
    with pytest.raises(ProviderError):
        await provider.complete(rendered_review(), VerdictAnswer)
    assert (breaker.state, runnable.calls) == ("open", 3)

    with pytest.raises(ProviderError, match="circuit breaker open") as raised:
        await provider.complete(rendered_review(), VerdictAnswer)

    assert runnable.calls == 3
    assert raised.value.call.attempts == 0


async def test_breaker_half_opens_after_the_pause_and_one_success_closes_it() -> None:
    clock = FakeClock()
    runnable = StandInRunnable([http_error(500)] * 3 + [AGREE_BUY])
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=60.0, clock=clock)
    provider, _ = make_provider(runnable, max_retries=2, breaker=breaker)
    with pytest.raises(ProviderError):
        await provider.complete(rendered_review(), VerdictAnswer)
    clock.now += 59.9
    assert breaker.state == "open"
    clock.now += 0.1
    assert breaker.state == "half-open"

    call = await provider.complete(rendered_review(), VerdictAnswer)

    assert (call.attempts, call.raw) == (1, AGREE_BUY)
    assert (breaker.state, breaker.failures) == ("closed", 0)


async def test_failure_while_half_open_reopens_the_breaker_at_once() -> None:
    clock = FakeClock()
    runnable = StandInRunnable([http_error(500)])
    breaker = CircuitBreaker(failure_threshold=3, reset_after_s=60.0, clock=clock)
    provider, _ = make_provider(runnable, max_retries=0, breaker=breaker)
    for _ in range(3):
        with pytest.raises(ProviderError):
            await provider.complete(rendered_review(), VerdictAnswer)
    clock.now += 60.0
    breaker.failures = 0  # even with the count reset, a half-open failure reopens

    with pytest.raises(ProviderError, match="InternalServerError"):
        await provider.complete(rendered_review(), VerdictAnswer)

    assert breaker.state == "open"
    assert breaker.opened_at == clock.now


def test_breaker_stays_closed_below_the_threshold_and_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=FakeClock())
    breaker.record_failure()
    breaker.record_failure()
    assert (breaker.state, breaker.allow()) == ("closed", True)

    breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()

    assert (breaker.state, breaker.failures) == ("closed", 2)


async def test_breaker_open_during_retries_stops_them() -> None:
    runnable = StandInRunnable([http_error(500)])
    provider, sleep = make_provider(
        runnable, max_retries=5, breaker=CircuitBreaker(failure_threshold=2, clock=FakeClock())
    )

    with pytest.raises(ProviderError, match="circuit breaker open"):
        await provider.complete(rendered_review(), VerdictAnswer)

    assert runnable.calls == 2
    assert len(sleep.delays) == 2


# ChatProvider: cache and runnables -----------------------------------------------------------
async def test_identical_call_is_served_from_the_cache_without_calling_the_model() -> None:
    runnable = StandInRunnable([AGREE_BUY, '{"verdict": "sell"}'])
    cache = MemoryResponseCache()
    provider, _ = make_provider(runnable, cache=cache)
    first = await provider.complete(rendered_review(), VerdictAnswer)
    tokens: list[str] = []

    second = await provider.complete(rendered_review(), VerdictAnswer, tokens.append)

    assert runnable.calls == 1
    assert (first.cached, second.cached) == (False, True)
    assert (second.raw, second.input_tokens, second.output_tokens) == (AGREE_BUY, 321, 45)
    assert second.attempts == 0
    assert tokens == [AGREE_BUY]
    assert list(cache.entries) == [
        cache_key("groq", MODEL, first.prompt_ref or "", first.input_sha256 or "")
    ]


async def test_different_rendered_input_misses_the_cache() -> None:
    from nodes.llm import review_values

    runnable = StandInRunnable([AGREE_BUY, '{"verdict": "sell"}'])
    provider, _ = make_provider(runnable, cache=MemoryResponseCache())
    other = PROMPTS.get("groq_check").render(review_values(review_request("sell")))
    await provider.complete(rendered_review(), VerdictAnswer)

    call = await provider.complete(other, VerdictAnswer)

    assert runnable.calls == 2
    assert (call.cached, call.raw) == (False, '{"verdict": "sell"}')


async def test_reviewer_verdict_from_the_cache_is_marked_cached() -> None:
    runnable = StandInRunnable([AGREE_BUY])
    reviewer = reviewer_over(runnable, cache=MemoryResponseCache())
    await reviewer.review(review_request("buy"))

    verdict = await reviewer.review(review_request("buy"))

    assert verdict.verdict == "buy"
    assert verdict.call is not None and verdict.call["cached"] is True
    assert runnable.calls == 1


async def test_failed_calls_are_not_cached() -> None:
    cache = MemoryResponseCache()
    provider, _ = make_provider(StandInRunnable([http_error(401)]), cache=cache)

    with pytest.raises(ProviderError):
        await provider.complete(rendered_review(), VerdictAnswer)

    assert cache.entries == {}


@pytest.mark.parametrize(
    "changed",
    [("ollama", MODEL, "p@1", "x"), ("groq", "m2", "p@1", "x"), ("groq", MODEL, "p@2", "x")],
)
def test_cache_key_changes_with_provider_model_prompt_or_input(
    changed: tuple[str, str, str, str],
) -> None:
    assert cache_key("groq", MODEL, "p@1", "x") != cache_key(*changed)


async def test_factory_builds_one_runnable_per_schema_from_its_grammar_safe_schema() -> None:
    runnable = StandInRunnable([AGREE_BUY])
    provider, _ = make_provider(runnable)
    factory = provider.factory
    assert isinstance(factory, Factory)

    await provider.complete(rendered_review(), VerdictAnswer)
    await provider.complete(rendered_review(), VerdictAnswer)
    await provider.complete(rendered_review(), SizingAnswer)

    schemas: list[type[BaseModel]] = [VerdictAnswer, SizingAnswer]
    assert factory.schemas == [answer_wire_schema(s) for s in schemas]


# Through the graph ---------------------------------------------------------------------------
BUY_ETH = {"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.8, 0.1), "KRW-XRP": (0.1, 0.1)}


def llm_context(exchange: Any, sizing_raw: str, *, reviewer_raw: str = AGREE_BUY) -> Any:
    context = kit.make_context(exchange, probabilities=BUY_ETH)
    context.groq = reviewer_over(StandInRunnable([reviewer_raw]))
    context.ollama = reviewer_over(
        StandInRunnable([reviewer_raw]), role="ollama_check", name="ollama"
    )
    context.sizer = sizer_over(StandInRunnable([sizing_raw]))
    return context


@pytest.mark.parametrize(
    ("volatility", "cap", "rule"),
    [(0.001, 1.0, "max_investment_ratio"), (0.01, 0.2, "weak_or_volatile_signal")],
    ids=["calm-strong", "volatile"],
)
async def test_llm_sizing_ratio_of_seven_and_a_half_is_clamped_to_the_tier_cap(
    volatility: float, cap: float, rule: str
) -> None:
    exchange = await kit.make_exchange()
    context = llm_context(
        exchange, '{"investment_ratio": 7.5, "stop_loss_pct": 1.5, "take_profit_pct": 3}'
    )
    # BUY_ETH expects +70 bps: 56 bps after the 14 bps of costs, 46 over the 10 bps margin.
    strength, volatile = signal_tier(46.0, volatility, context.policy)
    assert (strength, volatile) == ("strong", volatility >= context.policy.high_volatility_60m)
    state = await kit.initial_state(exchange, volatility_60=volatility)

    result = await kit.run_graph(context, state)

    clamps = kit.events_of(result, "clamp")
    assert [(e["field"], e["proposed"], e["clamped_to"], e["rule"]) for e in clamps] == [
        ("investment_ratio", 7.5, cap, rule)
    ]
    assert result["sizing"]["investment_ratio"] == cap
    assert result["sizing"]["call"]["prompt_ref"] == PROMPTS.get("sizing").ref
    assert result["groq"]["call"]["prompt_ref"] == PROMPTS.get("groq_check").ref
    assert result["decision"]["action"] == "buy"


async def test_unparseable_llm_sizing_holds_sizer_failed_with_the_raw_text() -> None:
    exchange = await kit.make_exchange()
    raw = "I'd put about a third in, with a tight stop."
    context = llm_context(exchange, raw)

    result = await kit.run_graph(context, await kit.initial_state(exchange))

    assert result["decision"] == {"action": "hold", "market": "KRW-ETH", "reason": "sizer_failed"}
    assert result["sizing"]["refused"] == "sizer_failed"
    assert result["sizing"]["call"]["raw"] == raw
    assert "no JSON object" in result["sizing"]["reasoning"]
    assert (await exchange.get_account()).positions == {}


async def test_garbage_review_holds_groq_error_and_never_reaches_the_sizer() -> None:
    exchange = await kit.make_exchange()
    context = llm_context(exchange, '{"investment_ratio": 0.5}', reviewer_raw="BUY BUY BUY")

    result = await kit.run_graph(context, await kit.initial_state(exchange))

    assert result["decision"]["reason"] == "groq_error"
    assert result["groq"]["agrees"] is False
    assert result["groq"]["call"]["raw"] == "BUY BUY BUY"
    assert context.sizer.provider.factory.runnable.calls == 0
    assert (await exchange.get_account()).positions == {}


def test_default_policy_tiers_used_by_the_graph_tests() -> None:
    policy = TradingPolicy()

    assert signal_tier(46.0, 0.001, policy) == ("strong", False)
    assert signal_tier(46.0, None, policy) == ("strong", True)
    assert signal_tier(12.0, 0.001, policy) == ("medium", False)
    assert signal_tier(None, 0.001, policy) == ("weak", False)
