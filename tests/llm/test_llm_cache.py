"""llm.cache through the provider: identical calls answered from the cache.

The chat model is `StandInRunnable` (llm_kit.py), a stand-in for LangChain's Runnable
interface used in these UNIT tests only; the real `ChatGroq` and `ChatOllama` are tested
against local protocol servers in tests/integration/test_llm_servers.py.
"""

from __future__ import annotations

import pytest
from llm_kit import (
    AGREE_BUY,
    MODEL,
    PROMPTS,
    StandInRunnable,
    http_error,
    make_provider,
    rendered_review,
    review_request,
    reviewer_over,
)

from llm.answers import VerdictAnswer
from llm.cache import MemoryResponseCache, cache_key
from llm.provider import ProviderError


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
    from llm.reviewers import review_values

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
