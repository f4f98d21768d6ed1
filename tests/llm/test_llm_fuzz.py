"""Fuzzing the LLM reviewer and sizer with malformed model output.

The chat model is `StandInRunnable`, a stand-in for LangChain's Runnable interface (`ainvoke`
returning an `AIMessage`, `astream` yielding `AIMessageChunk`s) that replays one generated
answer. It is used in these UNIT tests only; the real `ChatGroq` and `ChatOllama` are tested
against local protocol servers in tests/integration/test_llm_servers.py.

The properties: whatever the model says, `LLMReviewer.review` and `LLMSizer.size` return
(never raise); a reviewer approves only an answer whose JSON verdict is exactly the proposed
action; a sizing answer is either marked unusable (NaN numbers and an error) or lands inside
the hard limits once clamped. `review` is async and hypothesis drives sync functions, so each
example runs its coroutine with `asyncio.run`.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from pydantic import ValidationError

from graph.context import TradingPolicy
from graph.review import ReviewRequest, SizingRequest
from llm.answers import SizingAnswer, VerdictAnswer
from llm.parsing import LLMOutputError, extract_json, split_thinking
from llm.provider import ChatProvider
from llm.resilience import CircuitBreaker
from llm.reviewers import LLMReviewer, LLMSizer
from nodes.sizing import clamp_proposal
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary

PROMPTS = PromptLibrary(DEFAULT_PROMPTS_DIR)
POLICY = TradingPolicy()
FUZZ = settings(
    max_examples=500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@dataclass
class StandInRunnable:
    """Replays one answer, whole (`ainvoke`) or in chunks with a finish reason (`astream`)."""

    text: str
    chunk_size: int = 7

    async def ainvoke(self, messages: list[BaseMessage]) -> AIMessage:
        return AIMessage(content=self.text)

    async def astream(self, messages: list[BaseMessage]) -> AsyncIterator[AIMessageChunk]:
        pieces = [
            self.text[i : i + self.chunk_size] for i in range(0, len(self.text), self.chunk_size)
        ]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            yield AIMessageChunk(
                content=piece, response_metadata={"finish_reason": "stop"} if last else {}
            )


async def _no_sleep(seconds: float) -> None:
    raise AssertionError("a model answer, however bad, is never retried")


def provider_for(text: str, stream: bool) -> ChatProvider:
    return ChatProvider(
        name="groq",
        model="fuzz-model",
        factory=lambda schema: StandInRunnable(text),
        stream=stream,
        breaker=CircuitBreaker(failure_threshold=1_000_000),
        sleep=_no_sleep,
    )


def review_request(action: str) -> ReviewRequest:
    return ReviewRequest(
        role="groq_check",
        action=action,  # type: ignore[arg-type]
        market="KRW-BTC",
        entry_probability=0.66,
        exit_probability=0.2,
        features={"rsi_14": 51.0, "volatility_60": 0.0012},
        position=None,
        bar_time="2025-09-19T00:00:00+00:00",
    )


SIZING_REQUEST = SizingRequest(
    market="KRW-BTC",
    capital_krw=2_000_000.0,
    cash_krw=1_500_000.0,
    positions={},
    entry_probability=0.66,
    volatility_60m=0.0012,
    range_10m=0.002,
    recent_results=[],
    risk_level="medium",
    limits={
        "min_investment_ratio": POLICY.min_investment_ratio,
        "max_investment_ratio": POLICY.max_investment_ratio,
        "stop_loss_cap_pct": POLICY.stop_loss_cap_pct,
        "take_profit_cap_pct": POLICY.take_profit_cap_pct,
    },
)


# Strategies --------------------------------------------------------------------------------
SPECIAL_NUMBERS = st.sampled_from(
    [math.nan, math.inf, -math.inf, 1e308, -1e308, 10**400, -(10**30), 0, 1, 1.0, 100, 101, -1]
)
PLAIN_NUMBERS = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False), st.integers(), SPECIAL_NUMBERS
)
NUMBER_TEXT = st.builds(
    lambda pad, number, suffix: f"{pad}{number}{suffix}{pad}",
    st.sampled_from(["", " ", "\n"]),
    PLAIN_NUMBERS,
    st.sampled_from(["", "%", " %", "%%", "x", "e", "e5", " KRW", ".", ",", "-"]),
)
GARBAGE_TEXT = st.sampled_from(
    [
        *("N/A", "n/a", "none", "null", "-", "", "nan", "NaN", "inf", "-Infinity", "1e400"),
        *("1,000", "0x10", "½", "1_000", "٣", "%", "high", "low", "about 20%", "20-30%"),
    ]
)
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
NUMBER_LIKE = st.one_of(PLAIN_NUMBERS, NUMBER_TEXT, GARBAGE_TEXT, JSON_VALUES)
VERDICT_LIKE = st.one_of(
    st.sampled_from(["buy", "sell", "hold", "BUY ", " Sell\n", "HOLD", "approve", "long"]),
    st.sampled_from(["short", "buy.", "b u y", "yes", "agree", "", "Buy!", "sell/hold"]),
    st.text(max_size=8),
    st.integers(),
    st.floats(),
    st.none(),
    st.lists(st.sampled_from(["buy", "sell"]), max_size=2),
)
EXTRA_KEYS = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=3)

VERDICT_OBJECTS = st.builds(
    lambda extra, fields: {**extra, **fields},
    EXTRA_KEYS,
    st.fixed_dictionaries(
        {"verdict": VERDICT_LIKE},
        optional={
            "confidence": NUMBER_LIKE,
            "reasoning": st.one_of(st.text(max_size=40), st.none(), JSON_VALUES),
            "risks": st.one_of(st.text(max_size=20), JSON_VALUES),
        },
    ),
)
# Close to a real answer (every field present, numbers a model might write): most of these
# parse, so the approving branch is exercised as much as the failing one.
NEAR_NUMBERS = st.one_of(
    st.floats(min_value=-5, max_value=250),
    st.integers(-5, 250),
    st.builds(lambda n, s: f"{n}{s}", st.integers(-5, 250), st.sampled_from(["", "%", " %"])),
    GARBAGE_TEXT,
    SPECIAL_NUMBERS,
)
NEAR_VERDICTS = st.builds(
    lambda verdict, confidence, risks: {
        "verdict": verdict,
        "confidence": confidence,
        "reasoning": "numbers",
        "risks": risks,
    },
    st.sampled_from(["buy", "sell", "buy", "sell", "BUY", " Sell ", "hold\n", "approve", "Buy."]),
    st.one_of(st.floats(0, 1), st.integers(0, 100), NEAR_NUMBERS),
    st.one_of(st.lists(st.text(max_size=8), max_size=3), st.text(max_size=8), st.none()),
)
VERDICT_OBJECTS = st.one_of(
    NEAR_VERDICTS,
    VERDICT_OBJECTS,
    st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4),
)

SIZING_OBJECTS = st.builds(
    lambda extra, fields: {**extra, **fields},
    EXTRA_KEYS,
    st.fixed_dictionaries(
        {},
        optional={
            "investment_ratio": NUMBER_LIKE,
            "stop_loss_pct": NUMBER_LIKE,
            "take_profit_pct": NUMBER_LIKE,
            "max_loss_acceptable": NUMBER_LIKE,
            "take_profit_target": NUMBER_LIKE,
            "reasoning": st.one_of(st.text(max_size=40), st.none(), JSON_VALUES),
        },
    ),
)

NEAR_SIZINGS = st.builds(
    lambda ratio, stop, take, names: {
        "investment_ratio": ratio,
        names[0]: stop,
        names[1]: take,
        "reasoning": "medium signal",
    },
    NEAR_NUMBERS,
    NEAR_NUMBERS,
    NEAR_NUMBERS,
    st.sampled_from(
        [
            ("stop_loss_pct", "take_profit_pct"),
            ("max_loss_acceptable", "take_profit_target"),
            ("stop_loss_pct", "take_profit_target"),
        ]
    ),
)
SIZING_OBJECTS = st.one_of(NEAR_SIZINGS, SIZING_OBJECTS)

WRAPPINGS = (
    "bare",
    "indented",
    "fence",
    "fence-unclosed",
    "prose",
    "think-before",
    "think-after-unterminated",
    "think-closing-only",
    "truncated",
    "two-objects",
)


@st.composite
def model_outputs(draw: st.DrawFn, objects: st.SearchStrategy[dict[str, Any]]) -> str:
    """One JSON object as a model might send it: wrapped, fenced, truncated or thinking."""
    obj = draw(objects)
    body = json.dumps(obj, indent=2 if draw(st.booleans()) else None)  # NaN/Infinity literals
    prose = draw(st.text(max_size=30))
    wrapping = draw(st.sampled_from(WRAPPINGS))
    if wrapping == "bare":
        return body
    if wrapping == "indented":
        return f"\n\n  {body}  \n"
    if wrapping == "fence":
        return f"{prose}\n```{draw(st.sampled_from(['json', 'JSON', '']))}\n{body}\n```\n{prose}"
    if wrapping == "fence-unclosed":
        return f"```json\n{body}"
    if wrapping == "prose":
        return f"{prose} {body} {draw(st.text(max_size=30))}"
    if wrapping == "think-before":
        return f"<think>{prose}</think>\n{body}"
    if wrapping == "think-after-unterminated":
        return f"{body}\n<think>{prose}"
    if wrapping == "think-closing-only":
        return f"{prose}</think>{body}"
    if wrapping == "truncated":
        return body[: draw(st.integers(0, len(body)))]
    return f"{body}\n{json.dumps(draw(objects))}"


ANY_OUTPUT = st.one_of(
    model_outputs(NEAR_VERDICTS),
    model_outputs(NEAR_VERDICTS),
    model_outputs(VERDICT_OBJECTS),
    st.text(max_size=200),
    st.text(alphabet='{}[]":,0123456789.-eE tnrufalsN<>/hik`%', max_size=120),
)
SIZING_OUTPUT = st.one_of(
    model_outputs(NEAR_SIZINGS),
    model_outputs(NEAR_SIZINGS),
    model_outputs(SIZING_OBJECTS),
    st.text(max_size=200),
    st.text(alphabet='{}[]":,0123456789.-eE tnrufalsN<>/hik`%', max_size=120),
)


# Oracles -----------------------------------------------------------------------------------
def parsed_verdict(raw: str) -> tuple[dict[str, Any] | None, VerdictAnswer | None]:
    _, answer = split_thinking(raw)
    try:
        obj = extract_json(answer)
    except LLMOutputError:
        return None, None
    try:
        return obj, VerdictAnswer.model_validate(obj)
    except ValidationError:
        return obj, None


# Properties --------------------------------------------------------------------------------
@FUZZ
@given(raw=ANY_OUTPUT, action=st.sampled_from(["buy", "sell"]), stream=st.booleans())
def test_reviewer_never_raises_and_approves_only_an_exact_verdict(
    raw: str, action: str, stream: bool
) -> None:
    reviewer = LLMReviewer("groq_check", provider_for(raw, stream), PROMPTS)

    verdict = asyncio.run(reviewer.review(review_request(action)))

    assert verdict.verdict in {"buy", "sell", "hold"}
    obj, valid = parsed_verdict(raw)
    event("agrees" if verdict.verdict == action else "error" if verdict.error else "other")
    if valid is None:
        assert (verdict.verdict, verdict.confidence) == ("hold", 0.0)
        assert verdict.error is not None
    else:
        assert verdict.error is None
        assert verdict.verdict == valid.verdict
        assert 0.0 <= verdict.confidence <= 1.0
    if verdict.verdict == action:
        assert obj is not None
        assert isinstance(obj["verdict"], str) and obj["verdict"].strip().lower() == action
    assert verdict.call is not None and verdict.call["raw"] == raw


@FUZZ
@given(raw=SIZING_OUTPUT, stream=st.booleans())
def test_sizer_never_raises_and_its_proposal_is_unusable_or_clamps_into_the_limits(
    raw: str, stream: bool
) -> None:
    sizer = LLMSizer(provider_for(raw, stream), PROMPTS)

    proposal = asyncio.run(sizer.size(SIZING_REQUEST))

    numbers = (proposal.investment_ratio, proposal.stop_loss_pct, proposal.take_profit_pct)
    values, clamps = clamp_proposal(proposal, POLICY, [])
    event("unusable" if proposal.error else f"usable, {len(clamps)} clamps")
    if proposal.error is not None:
        assert all(math.isnan(n) for n in numbers)
        assert (values, clamps) == (None, [])
        return
    assert all(math.isfinite(n) for n in numbers)
    assert values is not None
    assert POLICY.min_investment_ratio <= values["investment_ratio"] <= 1.0
    assert POLICY.stop_loss_floor_pct <= values["stop_loss_pct"] <= POLICY.stop_loss_cap_pct
    take = values["take_profit_pct"]
    assert POLICY.take_profit_floor_pct <= take <= POLICY.take_profit_cap_pct
    answer = SizingAnswer.model_validate(extract_json(split_thinking(raw)[1]))
    assert proposal.investment_ratio == answer.investment_ratio
    assert (proposal.stop_loss_pct, proposal.take_profit_pct) == answer.protections()


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from(["buy", "sell"]),
    noise=st.text(alphabet=st.characters(blacklist_characters="{"), max_size=40),
    form=st.sampled_from(["closed", "unterminated", "closing-only", "two-unterminated"]),
    extra=EXTRA_KEYS,
)
def test_an_approval_written_only_inside_thinking_never_approves(
    action: str, noise: str, form: str, extra: dict[str, Any]
) -> None:
    body = json.dumps({**extra, "verdict": action, "confidence": 0.99})
    raw = {
        "closed": f"<think>{body}</think>{noise}",
        "unterminated": f"{noise}<THINK>{body}",
        "closing-only": f"{body}{noise}</think>{noise}",
        "two-unterminated": f"<think>{noise}<think>{body}",
    }[form]
    reviewer = LLMReviewer("groq_check", provider_for(raw, stream=False), PROMPTS)

    verdict = asyncio.run(reviewer.review(review_request(action)))

    assert verdict.verdict == "hold"
    assert verdict.error is not None


@settings(max_examples=300, deadline=None)
@given(text=st.one_of(st.text(max_size=300), model_outputs(VERDICT_OBJECTS)))
def test_parsing_helpers_raise_nothing_but_llm_output_error(text: str) -> None:
    _, answer = split_thinking(text)

    assert "<think>" not in answer.lower() and "</think>" not in answer.lower()
    assert len(answer) <= len(text)
    try:
        obj = extract_json(answer)
    except LLMOutputError:
        return
    assert isinstance(obj, dict)
