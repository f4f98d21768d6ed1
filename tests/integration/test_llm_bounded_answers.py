"""Ollama's `format` must compile into a llama.cpp grammar; every answer is bounded.

Against the local protocol servers (llm_servers.py): the fake Ollama refuses a schema that
llama.cpp cannot compile the way Ollama does (HTTP 500 with its error), stops a looping model
at `options.num_predict`, and can stream forever to exercise the timeout.
"""

from __future__ import annotations

import json
from typing import Any

import ollama
import pytest
from langchain_ollama import ChatOllama
from llm_servers import Endless, GroqServer, OllamaServer, Text
from ollama_format import GRAMMAR_FAILED, INVALID_SCHEMA, ollama_format_refusal

from app.llm import build_reviewers, ollama_provider
from app.settings import Settings
from graph.review import ReviewRequest, SizingRequest
from llm.answers import ANSWER_MODELS, VerdictAnswer, answer_wire_schema
from llm.reviewers import LLMReviewer, LLMSizer
from prompts.loader import DEFAULT_PROMPTS_DIR, PromptLibrary

OLLAMA_MODEL = "qwen2.5:14b"
VERDICT = {"verdict": "buy", "confidence": 0.8, "reasoning": "trend up", "risks": []}
SIZING = {
    "investment_ratio": 0.3,
    "stop_loss_pct": 1.5,
    "take_profit_pct": 3.0,
    "max_loss_acceptable": 1.5,
    "take_profit_target": 3.0,
    "reasoning": "medium signal",
}


def settings_for(ollama: OllamaServer, groq: GroqServer | None = None, **values: Any) -> Settings:
    base: dict[str, Any] = {"ollama_host": ollama.base_url, "sizing_provider": "ollama"}
    if groq is not None:
        base |= {"groq_api_key": "test-key", "groq_base_url": groq.base_url}
    return Settings(_env_file=None, **(base | values))  # type: ignore[call-arg]


def review_request() -> ReviewRequest:
    return ReviewRequest(
        role="ollama_check",
        action="buy",
        market="KRW-ETH",
        entry_probability=0.6,
        exit_probability=0.1,
        features={"rsi_14": 55.0, "ret_60": 0.002},
        position=None,
        recent_closes=(6_000_000.0, 6_010_000.0),
    )


def sizing_request() -> SizingRequest:
    return SizingRequest(
        market="KRW-ETH",
        capital_krw=1_000_000.0,
        cash_krw=1_000_000.0,
        positions={},
        entry_probability=0.6,
        volatility_60m=0.001,
        range_10m=0.001,
        recent_results=[],
        risk_level="medium",
        limits={
            "min_investment_ratio": 0.05,
            "max_investment_ratio": 1.0,
            "stop_loss_cap_pct": 3.0,
            "take_profit_cap_pct": 20.0,
        },
    )


def ollama_reviewer(settings: Settings) -> LLMReviewer:
    provider = ollama_provider(settings, None)
    return LLMReviewer("ollama_check", provider, PromptLibrary(DEFAULT_PROMPTS_DIR))


# The fake refuses what Ollama refuses --------------------------------------------------------
@pytest.mark.parametrize(
    ("node", "error"),
    [
        ({"type": "string", "maxLength": 2000}, GRAMMAR_FAILED),
        ({"type": "string", "maxLength": 4000}, GRAMMAR_FAILED),
        ({"type": "array", "items": {"type": "number"}, "maxItems": 1998}, GRAMMAR_FAILED),
        ({"type": "string", "pattern": "^\\d{4}$"}, GRAMMAR_FAILED),
        ({"type": "string", "pattern": "[a-z]+"}, INVALID_SCHEMA),
        ({"$ref": "other.json#/x"}, INVALID_SCHEMA),
    ],
)
async def test_fake_ollama_answers_a_schema_llama_cpp_cannot_compile_with_ollamas_500(
    ollama_server: OllamaServer, node: dict[str, Any], error: str
) -> None:
    schema = {"type": "object", "properties": {"field": node}, "required": ["field"]}
    ollama_server.script(Text(json.dumps({"field": "x"})))
    chat = ChatOllama(model=OLLAMA_MODEL, base_url=ollama_server.base_url, format=schema)

    with pytest.raises(ollama.ResponseError) as raised:
        await chat.ainvoke("answer")

    assert raised.value.status_code == 500
    assert raised.value.error == error
    assert ollama_server.pending == 1  # refused before the "model" ran


def test_fake_ollama_compiles_bounds_just_under_ollamas_limits() -> None:
    string = {"type": "object", "properties": {"s": {"type": "string", "maxLength": 1999}}}
    array = {"type": "object", "properties": {"a": {"type": "array", "maxItems": 1997}}}

    assert ollama_format_refusal(string) is None
    assert ollama_format_refusal(array) is None


async def test_the_old_strict_schema_is_refused_by_the_fake_and_the_check_holds_unretried(
    ollama_server: OllamaServer,
) -> None:
    # What the project sent before: the answer model's own schema, with maxLength 4000.
    settings = settings_for(ollama_server, llm_max_retries=2)
    provider = ollama_provider(settings, None)
    build = provider.factory
    provider.factory = lambda _schema: build(VerdictAnswer.model_json_schema())
    reviewer = LLMReviewer("ollama_check", provider, PromptLibrary(DEFAULT_PROMPTS_DIR))
    ollama_server.script(Text(json.dumps(VERDICT)))

    verdict = await reviewer.review(review_request())

    assert verdict.verdict == "hold"
    assert verdict.error is not None
    assert GRAMMAR_FAILED in verdict.error
    assert len(ollama_server.chat_requests) == 1


# What the project sends ----------------------------------------------------------------------
async def test_checks_and_sizing_through_real_clients_send_compilable_formats_and_caps(
    ollama_server: OllamaServer, groq_server: GroqServer
) -> None:
    ollama_server.script(Text(json.dumps(VERDICT)), Text(json.dumps(SIZING)))
    groq_server.script(Text(json.dumps(VERDICT)))
    settings = settings_for(ollama_server, groq_server, ollama_num_predict=64, groq_max_tokens=200)
    reviewers = build_reviewers(settings, None)

    ollama_verdict = await reviewers.ollama.review(review_request())
    proposal = await reviewers.sizer.size(sizing_request())
    groq_verdict = await reviewers.groq.review(review_request())

    assert (ollama_verdict.verdict, ollama_verdict.error) == ("buy", None)
    assert (proposal.investment_ratio, proposal.error) == (0.3, None)
    assert (groq_verdict.verdict, groq_verdict.error) == ("buy", None)
    bodies = [request.json for request in ollama_server.chat_requests]
    assert [body["format"]["title"] for body in bodies] == ["VerdictAnswer", "SizingAnswer"]
    assert all(ollama_format_refusal(body["format"]) is None for body in bodies)
    assert all(body["options"]["num_predict"] == 64 for body in bodies)
    assert groq_server.chat_requests[0].json["max_tokens"] == 200


def test_every_registered_answer_model_passes_the_fake_ollama() -> None:
    refusals = {model: ollama_format_refusal(answer_wire_schema(model)) for model in ANSWER_MODELS}

    assert refusals == dict.fromkeys(ANSWER_MODELS)


async def test_a_reasoning_past_its_limit_from_ollama_is_a_hold_with_the_raw_answer(
    ollama_server: OllamaServer,
) -> None:
    raw = json.dumps(VERDICT | {"reasoning": "y" * 4001})
    ollama_server.script(Text(raw))

    verdict = await ollama_reviewer(settings_for(ollama_server)).review(review_request())

    assert verdict.verdict == "hold"
    assert verdict.error is not None
    assert "at most 4000 characters" in verdict.error
    assert verdict.call is not None
    assert verdict.call["raw"] == raw


# Bounded answers ---------------------------------------------------------------------------
async def test_a_model_looping_in_its_reasoning_stops_at_num_predict_and_the_check_holds(
    ollama_server: OllamaServer,
) -> None:
    loop = Endless()
    ollama_server.script(loop)
    settings = settings_for(ollama_server, ollama_num_predict=40, llm_max_retries=2)

    verdict = await ollama_reviewer(settings).review(review_request())

    assert verdict.verdict == "hold"
    assert verdict.error is not None
    assert "token cap" in verdict.error
    assert verdict.call is not None
    assert verdict.call["raw"] == loop.prefix + loop.piece * 39
    assert verdict.call["output_tokens"] == 40
    assert len(ollama_server.chat_requests) == 1
    assert ollama_server.chat_requests[0].json["options"]["num_predict"] == 40


async def test_a_stream_that_never_finishes_is_a_hold_within_the_timeout(
    ollama_server: OllamaServer,
) -> None:
    loop = Endless(ignore_num_predict=True, max_seconds=30.0)
    ollama_server.script(loop)
    settings = settings_for(ollama_server, llm_timeout_s=0.5, llm_max_retries=0)

    verdict = await ollama_reviewer(settings).review(review_request())

    assert verdict.verdict == "hold"
    assert verdict.error == "timed out after 0.5s"
    assert verdict.call is not None
    assert verdict.call["raw"].startswith(loop.prefix + loop.piece)  # kept as far as it got
    assert verdict.call["latency_ms"] < 5000


async def test_a_sizing_that_never_finishes_is_unusable_within_the_timeout(
    ollama_server: OllamaServer,
) -> None:
    ollama_server.script(Endless(ignore_num_predict=True, max_seconds=30.0))
    settings = settings_for(ollama_server, llm_timeout_s=0.5, llm_max_retries=0)
    sizer = LLMSizer(ollama_provider(settings, None), PromptLibrary(DEFAULT_PROMPTS_DIR))

    proposal = await sizer.size(sizing_request())

    assert proposal.error == "timed out after 0.5s"
    assert proposal.investment_ratio != proposal.investment_ratio  # NaN: the graph holds
