"""llm.reviewers: the LLM reviewer and sizer, alone and through the graph.

The chat model is `StandInRunnable` (llm_kit.py), a stand-in for LangChain's Runnable
interface used in these UNIT tests only; the real `ChatGroq` and `ChatOllama` are tested
against local protocol servers in tests/integration/test_llm_servers.py.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import (
    HumanMessage,
    SystemMessage,
)
from llm_kit import (
    AGREE_BUY,
    MODEL,
    PROMPTS,
    StandInRunnable,
    http_error,
    kit,
    make_provider,
    rendered_review,
    review_request,
    reviewer_over,
    sizing_request,
)

from graph.context import TradingPolicy
from llm.reviewers import LLMSizer
from nodes.sizing import signal_tier
from prompts.loader import PromptLibrary


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


# Through the graph ---------------------------------------------------------------------------
BUY_ETH = {"KRW-BTC": (0.1, 0.1), "KRW-ETH": (0.8, 0.1), "KRW-XRP": (0.1, 0.1)}


def llm_context(exchange: Any, sizing_raw: str, *, reviewer_raw: str = AGREE_BUY) -> Any:
    return replace(
        kit.make_context(exchange, probabilities=BUY_ETH),
        groq=reviewer_over(StandInRunnable([reviewer_raw])),
        ollama=reviewer_over(StandInRunnable([reviewer_raw]), role="ollama_check", name="ollama"),
        sizer=sizer_over(StandInRunnable([sizing_raw])),
    )


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
