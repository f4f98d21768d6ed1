"""llm.provider: timeouts, streams cut short, one runnable per answer schema.

The chat model is `StandInRunnable` (llm_kit.py), a stand-in for LangChain's Runnable
interface used in these UNIT tests only; the real `ChatGroq` and `ChatOllama` are tested
against local protocol servers in tests/integration/test_llm_servers.py.
"""

from __future__ import annotations

import pytest
from llm_kit import (
    AGREE_BUY,
    Factory,
    StandInRunnable,
    StuckRunnable,
    make_provider,
    rendered_review,
)
from pydantic import BaseModel

from llm.answers import SizingAnswer, VerdictAnswer, answer_wire_schema
from llm.provider import ProviderError


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
