"""llm.resilience through the provider: retries, Retry-After, backoff, the breaker.

The chat model is `StandInRunnable` (llm_kit.py), a stand-in for LangChain's Runnable
interface used in these UNIT tests only; the real `ChatGroq` and `ChatOllama` are tested
against local protocol servers in tests/integration/test_llm_servers.py.
"""

from __future__ import annotations

import httpx
import ollama
import pytest
from llm_kit import (
    AGREE_BUY,
    FakeClock,
    StandInRunnable,
    http_error,
    make_provider,
    rendered_review,
)

from llm.answers import VerdictAnswer
from llm.parsing import LLMOutputError
from llm.provider import ProviderError
from llm.resilience import CircuitBreaker, is_retryable, retry_after_s


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
    assert retry_after_s(http_error(429, retry_after=retry_after)) == seconds


def test_missing_retry_after_header_or_response_gives_none() -> None:
    assert retry_after_s(http_error(429)) is None
    assert retry_after_s(ollama.ResponseError("x", 429)) is None


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
